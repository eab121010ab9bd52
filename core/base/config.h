/* Folder core/base/: what every Ringmail program reads before anything else —
 * the configuration file with its -o overrides (config.c) and the one-line
 * log (log.c).  It knows the store only for the store's options. */
/* core/base/config.h — the configuration shared by all Ringmail programs.
 *
 * ringmaild, ringmail-admin and ringmail-bench read one file of
 * `key = value` lines and then apply `-o key=value` overrides from the
 * command line, so a test or an operator never edits a file to change one
 * setting.
 *
 * File syntax:
 *   - one `key = value` per line; blanks around key and value are dropped;
 *   - `#` starts a comment at the start of a line or after a blank
 *     (`workers = 4   # one per core`); a `#` inside a word is kept
 *     (`passwd_file = /etc/pw#1`);
 *   - a value may be written in double quotes to keep blanks or a ` #`;
 *     inside quotes `\"` and `\\` are the only escapes;
 *   - a key given twice takes the later value; `-o` overrides come last.
 *
 * Every key must be known (see config_keys()): a typo is an error that
 * names the key and the place ("unknown key 'mail_rot' at /etc/r.conf:3"),
 * never a silently ignored setting.  Values are validated when they are
 * set, so a bad value is reported with its file:line, not later by the
 * program that happens to read it.
 *
 * Errors: functions return 0 or -errno.  Those that take `err` write one
 * human-readable line (no trailing newline, NUL-terminated, truncated to
 * errlen) describing the failure; err may be NULL.
 *
 * Threads: a config is filled at start-up by one thread; afterwards any
 * number of threads may read it (config_get* do not modify it).
 */
#ifndef RINGMAIL_CORE_CONFIG_H
#define RINGMAIL_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct store_opts;

/* The place a configuration file is looked for when none is named with -c
 * and $RINGMAIL_CONFIG is unset.  Its absence is not an error. */
#define CONFIG_DEFAULT_PATH "/etc/ringmail/ringmail.conf"

typedef enum config_type {
    CONFIG_STR,             /* any text, may be empty */
    CONFIG_INT,             /* decimal integer in [min, max] */
    CONFIG_BOOL,            /* yes|no|true|false|on|off|1|0 */
    CONFIG_ENUM,            /* one of `choices` ("a|b|c"), exact spelling */
} config_type;

typedef struct config_key {
    const char *name;
    config_type type;
    const char *def;        /* the default, as text */
    const char *choices;    /* CONFIG_ENUM only */
    long long min, max;     /* CONFIG_INT only */
    const char *help;       /* one line, for `ringmail-admin config` */
} config_key;

/* The table of known keys (static storage).  Adding a setting to any
 * program means adding a row here. */
const config_key *config_keys(size_t *n);

struct config_entry;

/* A configuration.  Owns its strings.  Zero-initialise, then config_init;
 * free with config_free. */
typedef struct config {
    struct config_entry *entries;   /* private: one per config_keys() row */
    size_t n;
} config;

/* Set every key to its default.  -ENOMEM. */
int config_init(config *cfg);
void config_free(config *cfg);

/* Read a configuration file on top of the current values.  Stops at the
 * first error: -ENOENT/-EACCES/... if it cannot be read, -EINVAL for a
 * syntax error, an unknown key or a bad value (err says which, with
 * path:line). */
int config_load_file(config *cfg, const char *path, char *err, size_t errlen);

/* Apply one override "key=value" (as given to -o).  The value is taken
 * literally after the '=' (no quotes, no comments); blanks around the key
 * are dropped.  -EINVAL for a missing '=', an unknown key or a bad value. */
int config_set(config *cfg, const char *kv, char *err, size_t errlen);

/* The common start-up sequence of every program: read `path` if given
 * (its absence is an error), else $RINGMAIL_CONFIG if set (likewise), else
 * CONFIG_DEFAULT_PATH if it exists; then apply the n overrides in order. */
int config_load(config *cfg, const char *path, const char *const *overrides,
                size_t n, char *err, size_t errlen);

/* The value of a known key, owned by cfg and valid until that key is set
 * again or cfg is freed; NULL for an unknown key (a programming error). */
const char *config_get(const config *cfg, const char *key);
/* The control socket's path (admin_socket; a relative one is under
 * mail_root) in buf, "" when it is off.  -ENAMETOOLONG if it does not fit. */
int config_admin_socket(const config *cfg, char *buf, size_t len);
/* Where the value came from: "default", "PATH:LINE" or "-o". */
const char *config_source(const config *cfg, const char *key);

/* Typed readers.  -ENOENT unknown key; -EINVAL the value does not parse as
 * the type asked (possible only when asking a key of another type). */
int config_get_int(const config *cfg, const char *key, long long *out);
int config_get_bool(const config *cfg, const char *key, bool *out);

/* The store's options (fsync policy, hierarchy separator) from cfg.
 * -EINVAL if a value does not map (cannot happen for validated values). */
int config_store_opts(const config *cfg, struct store_opts *o);

#endif
