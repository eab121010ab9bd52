/* core/lmtp/lmtp_data.c — the DATA stream (RFC 5321 4.5.2): undo the
 * dot-stuffing, find <CRLF>.<CRLF>, keep what fits under the size limit.
 *
 * The state machine reads one byte at a time and never looks back, so the
 * stream may arrive in pieces of any size. */
#include "store/assert.h"
#include "core/lmtp/lmtp_proto.h"

enum {
    S_BOL,      /* at the start of a line (after CRLF, or the first byte) */
    S_DOT,      /* a "." at the start of a line */
    S_DOTCR,    /* ".\r" at the start of a line */
    S_TEXT,     /* inside a line */
    S_CR,       /* after a CR inside a line */
};

void lmtp_data_init(lmtp_data *d, uint64_t max)
{
    d->state = S_BOL;
    d->size = 0;
    d->max = max;
}

static inline void emit(lmtp_data *d, char c, char *out, size_t *nout)
{
    if (d->size++ < d->max)
        out[(*nout)++] = c;
}

/* A byte inside a line, or after a CR. */
static inline void text(lmtp_data *d, char c, char *out, size_t *nout)
{
    emit(d, c, out, nout);
    if (c == '\r')
        d->state = S_CR;
    else if (c == '\n' && d->state == S_CR)
        d->state = S_BOL;
    else
        d->state = S_TEXT;     /* a bare LF is data, not a line end */
}

int lmtp_data_feed(lmtp_data *d, const char *p, size_t n, char *out, size_t *nout,
                   size_t *used)
{
    *nout = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        switch (d->state) {
        case S_BOL:
            if (c == '.')
                d->state = S_DOT;   /* stuffed, or the end: the next byte says */
            else
                text(d, c, out, nout);
            break;
        case S_DOT:
            if (c == '\r') {
                d->state = S_DOTCR;
            } else {
                /* "If the first character is a period and there are other
                 * characters on the line, the first character is deleted." */
                d->state = S_TEXT;
                text(d, c, out, nout);
            }
            break;
        case S_DOTCR:
            if (c == '\n') {
                d->state = S_BOL;
                *used = i + 1;
                return 1;
            }
            /* ".\r" and more on the line: the dot was stuffing */
            d->state = S_TEXT;
            text(d, '\r', out, nout);
            text(d, c, out, nout);
            break;
        default:
            text(d, c, out, nout);
            break;
        }
        RM_ASSERT(*nout <= i + 2);     /* a CR held back from the last call */
    }
    *used = n;
    return 0;
}
