/* tools/admin_control.c — who, kick, reload, flush-auth-cache and `stats`
 * without a user: requests to a running ringmaild over its control socket
 * (admin_socket; the protocol is described in core/server/control.h: a
 * request line, answer lines, then "OK" or "ERR reason").
 *
 * Answer lines go to stdout as they arrive; notes ("# ...", a server
 * process that could not answer) to stderr.  Any failure (no server, the
 * socket refused, "ERR") is one line on stderr and exit status 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/admin.h"

#define REQUEST_MAX 1024        /* CONTROL_MAX_REQUEST on the server */
#define ANSWER_TIMEOUT_S 120    /* `who` over very many sessions takes a while */

static int connect_control(admin_ctx *ctx, char *path, size_t len)
{
    if (config_admin_socket(&ctx->cfg, path, len) < 0) {
        admin_err("admin_socket: the path is too long for a Unix socket");
        return -1;
    }
    if (!path[0]) {
        admin_err("admin_socket is empty in the configuration: the server has no control "
                  "socket");
        return -1;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        admin_err("admin_socket: the path is too long for a Unix socket: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        admin_err("socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        if (e == ENOENT || e == ECONNREFUSED)
            admin_err("no server running: %s %s", path,
                      e == ENOENT ? "does not exist" : "refuses connections");
        else if (e == EACCES || e == EPERM)
            admin_err("permission denied on %s (run as root or as the server's user)", path);
        else
            admin_err("cannot connect to %s: %s", path, strerror(e));
        return -1;
    }
    struct timeval tv = {.tv_sec = ANSWER_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* Send the request, copy the answer; header (may be NULL) is printed
 * before the first line. */
int admin_control_request(admin_ctx *ctx, const char *req, const char *header)
{
    char path[4096];
    if (strlen(req) >= REQUEST_MAX) {
        admin_err("request too long");
        return ADMIN_FAIL;
    }
    int fd = connect_control(ctx, path, sizeof path);
    if (fd < 0)
        return ADMIN_FAIL;
    char line[REQUEST_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", req);
    if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
        admin_err("cannot send to %s: %s", path, strerror(errno));
        close(fd);
        return ADMIN_FAIL;
    }
    FILE *in = fdopen(fd, "r");
    if (!in) {
        admin_err("%s", strerror(errno));
        close(fd);
        return ADMIN_FAIL;
    }
    int ret = -1;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t k;
    /* the header goes with the first line, or the OK: not before an error */
    while (ret < 0 && (k = getline(&buf, &cap, in)) > 0) {
        if (buf[k - 1] != '\n')
            break;      /* cut short */
        buf[k - 1] = '\0';
        if (header && (!strcmp(buf, "OK") || strncmp(buf, "ERR", 3))) {
            fputs(header, stdout);
            header = NULL;
        }
        if (!strcmp(buf, "OK")) {
            ret = ADMIN_OK;
        } else if (!strncmp(buf, "ERR", 3)) {
            admin_err("%s", buf[3] ? buf + 4 : "the server refused the request");
            ret = ADMIN_FAIL;
        } else if (!strncmp(buf, "# ", 2)) {
            fflush(stdout);
            fprintf(stderr, "ringmail-admin: note: %s\n", buf + 2);
        } else {
            puts(buf);
        }
    }
    if (ret < 0) {
        admin_err("the server closed %s without finishing its answer%s", path,
                  errno == EAGAIN ? " (timeout)" : "");
        ret = ADMIN_FAIL;
    }
    free(buf);
    fclose(in);
    return ret;
}

int admin_cmd_who(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 0, 1, &npos, "who [USER]") < 0)
        return ADMIN_USAGE;
    char req[REQUEST_MAX];
    snprintf(req, sizeof req, "who%s%s", npos ? " " : "", npos ? pos[0] : "");
    if (npos && strpbrk(pos[0], " \t\r\n"))
        return admin_usage("who: a user name has no blanks");
    return admin_control_request(ctx, req, "USER\tADDRESS\tTLS\tCOMPRESS\tSTATE\tMAILBOX\tIDLE_S"
                           "\tIN_IDLE\tPROCESS.WORKER\tAGE_S\n");
}

int admin_cmd_kick(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 1, 1, &npos, "kick USER") < 0)
        return ADMIN_USAGE;
    if (strpbrk(pos[0], " \t\r\n"))
        return admin_usage("kick: a user name has no blanks");
    char req[REQUEST_MAX];
    snprintf(req, sizeof req, "kick %s", pos[0]);
    return admin_control_request(ctx, req, NULL);
}

int admin_cmd_reload(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 0, 0, &npos, "reload") < 0)
        return ADMIN_USAGE;
    return admin_control_request(ctx, "reload", NULL);
}

int admin_cmd_flush_auth_cache(admin_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    size_t npos;
    if (admin_args(argc, argv, NULL, 0, pos, 0, 0, &npos, "flush-auth-cache") < 0)
        return ADMIN_USAGE;
    return admin_control_request(ctx, "flush-auth-cache", NULL);
}

int admin_cmd_stats_any(admin_ctx *ctx, int argc, char **argv)
{
    if (argc == 1)      /* no user: the running server's numbers */
        return admin_control_request(ctx, "stats", NULL);
    return admin_cmd_stats(ctx, argc, argv);
}

int admin_cmd_control(admin_ctx *ctx, int argc, char **argv)
{
    /* `ctl REQUEST...`: a raw request, for scripts and tests */
    if (argc < 2)
        return admin_usage("usage: ctl REQUEST...");
    char req[REQUEST_MAX];
    size_t at = 0;
    for (int i = 1; i < argc; i++) {
        int n = snprintf(req + at, sizeof req - at, "%s%s", i > 1 ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= sizeof req - at)
            return admin_usage("ctl: request too long");
        at += (size_t)n;
    }
    return admin_control_request(ctx, req, NULL);
}
