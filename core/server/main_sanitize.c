/* core/server/main_sanitize.c — what LeakSanitizer is told to pass over in
 * ringmaild (linked only into the sanitized build).
 *
 * A defect of libldap 2.5 (Debian 12's 2.5.13), not ours: when the answer
 * to a request is a Notice of Disconnection (RFC 4511 4.4.1; slapd sends
 * one to every connection when it shuts down), try_read1msg returns -1
 * and never frees the BerElement it read the notice into.  Nothing the
 * caller holds refers to it, and ldap_unbind cannot free it, so a search
 * that is in flight when the directory stops loses those 117 bytes.
 * userdb_ldap.c drops idle connections the server has spoken on unread
 * (conn_stale), which avoids it for all but a search under way.
 *
 * The suppression names the frames of that orphaned element only: the
 * BerElement libldap allocates for a message to come
 * (ldap_alloc_ber_with_options, reached from ldap_result) and the buffer
 * ber_get_next reads the message into.  A result we fail to ldap_msgfree
 * is still reported: its LDAPMessage is allocated elsewhere and leaks
 * directly, the element and buffer being reached only through it. */

const char *__lsan_default_suppressions(void);

const char *__lsan_default_suppressions(void)
{
    return "leak:ldap_alloc_ber_with_options\n"
           "leak:ber_get_next\n";
}
