/* core/base/quota.h — a user's quota limits (RFC 9208 STORAGE and MESSAGE).
 *
 * One quota root per user, covering all the user's mailboxes.  Limits come
 * from the user's passwd-file line, in Dovecot's words (extra fields
 * `userdb_quota_rule=*:storage=1G`, `quota_rule2=*:messages=1000`, ...),
 * else from the configuration (`quota_storage`, `quota_messages`); none
 * means no limit. */
#ifndef RINGMAIL_CORE_BASE_QUOTA_H
#define RINGMAIL_CORE_BASE_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/config.h"

typedef struct quota_limits {
    uint64_t storage;       /* bytes; 0 = no limit */
    uint64_t messages;      /* 0 = no limit */
} quota_limits;

/* A size as Dovecot reads one: decimal digits, then optionally one unit
 * letter B, K, M, G or T (any case; powers of 1024) and nothing else.
 * Without a unit the number is in `unit` bytes.  0 or -EINVAL (also on
 * overflow). */
int quota_size_parse(const char *s, uint64_t unit, uint64_t *out);

/* One Dovecot quota rule, "<mailbox mask>:<limit>[:<limit>...]", each limit
 * `storage=N` (KiB without a unit), `bytes=N` (bytes without a unit) or
 * `messages=N`; or "<mask>:ignore".  Only the whole-user masks "*" and "?"
 * set limits here (the quota root is the user); a rule for one mailbox
 * ("Trash:storage=+100M") is accepted and has no effect.  A limit named
 * sets that resource in *l (0 = no limit), the others are left alone;
 * "*:ignore" clears both.  -EINVAL: a rule Dovecot would refuse (no ':',
 * unknown limit name or unit, a negative, relative or percentage limit
 * for the whole user). */
int quota_rule_parse(const char *rule, quota_limits *l);

/* The quota rules among a passwd-file line's extra fields (blank-separated
 * key=value; keys quota_rule, quota_rule2, ... with or without the
 * "userdb_" prefix), applied in order onto a zero *l.  *found says whether
 * the line had any: then they replace the configured defaults as a whole,
 * as a userdb quota_rule replaces the configured one in Dovecot.  extra may
 * be NULL.  -EINVAL if a rule is bad (*l is then unusable). */
int quota_extra_parse(const char *extra, quota_limits *l, bool *found);

/* The defaults from the configuration (quota_storage, quota_messages).
 * -EINVAL for a bad quota_storage. */
int quota_config_defaults(const config *cfg, quota_limits *l);

/* The limits of a user whose passwd-file extra fields are `extra`
 * (may be NULL): its rules if it has any, else the defaults. */
int quota_user_limits(const quota_limits *defaults, const char *extra, quota_limits *out);

#endif
