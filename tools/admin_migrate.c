/* tools/admin_migrate.c — `ringmail-admin migrate` runs ringmail-migrate.
 *
 * Migration speaks IMAP to another server, over TLS; ringmail-admin links
 * no TLS library (README, Layout), so the migration is its own program,
 * installed next to this one, and this command only hands it the same
 * command line: -c and -o first, then "migrate" and its arguments. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/admin.h"

int admin_cmd_migrate(admin_ctx *ctx, int argc, char **argv)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
    const char *prog = "ringmail-migrate";
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            strcpy(slash + 1, "ringmail-migrate");
            if (access(exe, X_OK) == 0)
                prog = exe;
        }
    }
    size_t max = (size_t)argc + 2 * ctx->noverrides + 4;
    char **av = calloc(max, sizeof *av);
    if (!av) {
        admin_err("out of memory");
        return ADMIN_FAIL;
    }
    size_t k = 0;
    av[k++] = (char *)"ringmail-migrate";
    if (ctx->conf_path) {
        av[k++] = (char *)"-c";
        av[k++] = (char *)ctx->conf_path;
    }
    for (size_t i = 0; i < ctx->noverrides; i++) {
        av[k++] = (char *)"-o";
        av[k++] = (char *)ctx->overrides[i];
    }
    for (int i = 0; i < argc; i++)
        av[k++] = argv[i];
    av[k] = NULL;
    fflush(NULL);
    if (prog == exe)
        execv(prog, av);
    else
        execvp(prog, av);
    admin_err("cannot run %s (installed next to ringmail-admin): %s", prog, strerror(errno));
    free(av);
    return ADMIN_FAIL;
}
