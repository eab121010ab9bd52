/* core/server/metrics_http.c — GET /metrics over HTTP/1.x (listen_metrics).
 *
 * One thread of its own with blocking-style I/O under poll deadlines, not
 * the workers' runtime: a scrape sums every slot of the region (tens of
 * microseconds to a few milliseconds with many workers and processes) and
 * a scraper may be slow or stuck; on its own thread neither costs an IMAP
 * session anything, and the worst a stuck scraper does is make the next
 * scrape wait for REQUEST_TIMEOUT_MS.  Connections are served one at a
 * time: Prometheus scrapes every few seconds, and an HTTP server with one
 * request per connection (Connection: close) needs no more.
 *
 * What it answers (RFC 9110): GET or HEAD /metrics (a query string is
 * ignored): 200 with the text format; another path: 404; another method:
 * 405 with Allow; a request head over REQUEST_MAX bytes: 431 (RFC 6585 5);
 * one not complete within REQUEST_TIMEOUT_MS: closed without an answer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/server/metrics.h"
#include "core/server/sidelisten.h"

#define REQUEST_MAX 8192
#define REQUEST_TIMEOUT_MS 5000
/* A whole answer must be taken within this: a scraper that stops reading
 * does not hold the thread longer. */
#define RESPONSE_TIMEOUT_MS 10000

struct metrics_http {
    sidelisten l;
};

int metrics_http_bind(const char *spec, metrics_http **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = sidelisten_parse("listen_metrics", spec, &ss, &len, err, errlen);
    if (rc < 0)
        return rc;
    metrics_http *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    if ((rc = sidelisten_bind(&h->l, &ss, len, 64)) < 0) {
        snprintf(err, errlen, "listen_metrics = %s: %s", spec, strerror(-rc));
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int metrics_http_port(const metrics_http *h)
{
    return h->l.port;
}

static bool send_all(metrics_http *h, int fd, const char *p, size_t n, int64_t deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (sidelisten_wait(&h->l, fd, POLLOUT, deadline) <= 0)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

static void answer(metrics_http *h, int fd, int status, const char *reason,
                   const char *extra, const char *body, size_t blen, bool head)
{
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: %s\r\n"
                      "Content-Length: %zu\r\n"
                      "%s"
                      "Connection: close\r\n\r\n",
                      status, reason,
                      status == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                                    : "text/plain; charset=utf-8",
                      blen, extra ? extra : "");
    int64_t deadline = sidelisten_now_ms() + RESPONSE_TIMEOUT_MS;
    if (send_all(h, fd, hdr, (size_t)hl, deadline) && !head)
        send_all(h, fd, body, blen, deadline);
}

static void serve_one(metrics_http *h, int fd)
{
    char req[REQUEST_MAX + 1];
    size_t n = 0;
    int64_t deadline = sidelisten_now_ms() + REQUEST_TIMEOUT_MS;
    char *end = NULL;
    while (!end) {
        if (n == REQUEST_MAX) {
            static const char msg[] = "Request header too large\n";
            answer(h, fd, 431, "Request Header Fields Too Large", NULL, msg,
                   sizeof msg - 1, false);
            return;
        }
        ssize_t r = recv(fd, req + n, REQUEST_MAX - n, MSG_DONTWAIT);
        if (r > 0) {
            n += (size_t)r;
            req[n] = '\0';
            end = strstr(req, "\r\n\r\n");
            if (!end)
                end = strstr(req, "\n\n");  /* a bare-LF client */
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (sidelisten_wait(&h->l, fd, POLLIN, deadline) <= 0)
                return;     /* too slow, or stopping: no answer */
        } else {
            return;         /* closed before the request was whole */
        }
    }
    /* request-line = method SP request-target SP HTTP-version */
    char *sp1 = memchr(req, ' ', (size_t)(end - req));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) {
        static const char msg[] = "Bad request\n";
        answer(h, fd, 400, "Bad Request", NULL, msg, sizeof msg - 1, false);
        return;
    }
    *sp1 = *sp2 = '\0';
    const char *method = req, *target = sp1 + 1;
    size_t tl = strcspn(target, "?");
    bool is_metrics = tl == 8 && !memcmp(target, "/metrics", 8);
    bool head = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head) {
        /* RFC 9110 15.5.6: a 405 "MUST generate an Allow header field" */
        static const char msg[] = "Method not allowed\n";
        answer(h, fd, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", msg,
               sizeof msg - 1, false);
        return;
    }
    if (!is_metrics) {
        static const char msg[] = "Not found: the metrics are at /metrics\n";
        answer(h, fd, 404, "Not Found", NULL, msg, sizeof msg - 1, head);
        return;
    }
    char *body;
    size_t blen;
    int rc = metrics_render(&body, &blen);
    if (rc < 0) {
        static const char msg[] = "Metrics unavailable\n";
        answer(h, fd, 503, "Service Unavailable", NULL, msg, sizeof msg - 1, head);
        return;
    }
    answer(h, fd, 200, "OK", NULL, body, blen, head);
    free(body);
}

static void *http_main(void *arg)
{
    metrics_http *h = arg;
    int fd;
    while ((fd = sidelisten_accept(&h->l, NULL)) >= 0) {
        serve_one(h, fd);
        /* Answered in full (or given up on).  Bytes of the request left
         * unread would make close() send a reset, which may destroy the
         * answer before the client reads it: end our side, then read
         * until the client closes (briefly). */
        shutdown(fd, SHUT_WR);
        int64_t deadline = sidelisten_now_ms() + 200;
        char sink[4096];
        while (sidelisten_wait(&h->l, fd, POLLIN, deadline) > 0 && recv(fd, sink, sizeof sink, 0) > 0) {
        }
        close(fd);
    }
    return NULL;
}

int metrics_http_start(metrics_http *h)
{
    return sidelisten_start(&h->l, http_main, h);
}

void metrics_http_free(metrics_http *h)
{
    if (!h)
        return;
    sidelisten_close(&h->l);
    free(h);
}
