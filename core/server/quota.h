/* core/server/quota.h — quota checks shared by IMAP and LMTP (cmd_quota.c). */
#ifndef RINGMAIL_CORE_SERVER_QUOTA_H
#define RINGMAIL_CORE_SERVER_QUOTA_H

#include "core/base/quota.h"
#include "core/server/server.h"

/* The defaults from the configuration into srv (quota_storage,
 * quota_messages, quota_full_tempfail); -EINVAL with a line on stderr. */
int quota_conf_init(imap_server *srv, const config *cfg);

/* The limits of `user` (its passwd-file line's rules, else the defaults;
 * a user without a line gets the defaults).  0 or -errno. */
int quota_limits_of(imap_server *srv, const char *user, quota_limits *out);

/* Would adding `msgs` messages of `bytes` bytes in all to the user's
 * mailboxes exceed a limit?  0 no (or no limit), -EDQUOT yes, another
 * -errno if the usage could not be read.  su may be NULL (opened here).
 * *lim and *use (either may be NULL) get what was compared.
 *
 * The check and the write it guards are not one atomic step: writes of
 * the user that run between them (another session, process or delivery)
 * are not seen, so each concurrent writer may pass the limit by at most
 * what its own command adds, never more (every write that finished before
 * a check is counted by it: the usage is read from the mailboxes' index
 * headers, which the writer updates before it returns). */
int quota_check_add(imap_server *srv, store_user *su, const char *user, uint64_t msgs,
                    uint64_t bytes, quota_limits *lim, store_usage *use);

#endif
