/* tools/admin_args.c — a command's options and positional arguments.
 *
 * Options may come anywhere after the command word (`check alice --repair`
 * reads as naturally as `check --repair alice`); "--" ends them, so a
 * mailbox named "-x" can still be given. */
#include <errno.h>
#include <string.h>

#include "tools/admin.h"

static const admin_opt *find_opt(const admin_opt *opts, size_t nopts,
                                 const char *name, size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

int admin_args(int argc, char **argv, const admin_opt *opts, size_t nopts,
               char **pos, size_t min, size_t max, size_t *npos,
               const char *synopsis)
{
    size_t n = 0;
    bool opts_done = false;

    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (!opts_done && a[0] == '-' && a[1] != '\0') {
            const char *name = a + (a[1] == '-' ? 2 : 1);
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const admin_opt *o = find_opt(opts, nopts, name, len);
            if (!o) {
                admin_usage("unknown option '%s'; usage: ringmail-admin %s", a, synopsis);
                return -EINVAL;
            }
            if (o->value) {
                if (eq) {
                    *o->value = eq + 1;
                } else if (i + 1 < argc) {
                    *o->value = argv[++i];
                } else {
                    admin_usage("option '%s' needs a value; usage: ringmail-admin %s",
                                a, synopsis);
                    return -EINVAL;
                }
            } else {
                if (eq) {
                    admin_usage("option '--%s' takes no value; usage: ringmail-admin %s",
                                o->name, synopsis);
                    return -EINVAL;
                }
                *o->flag = true;
            }
            continue;
        }
        if (n == max) {
            admin_usage("too many arguments; usage: ringmail-admin %s", synopsis);
            return -EINVAL;
        }
        pos[n++] = a;
    }
    if (n < min) {
        admin_usage("missing arguments; usage: ringmail-admin %s", synopsis);
        return -EINVAL;
    }
    *npos = n;
    return 0;
}
