/* core/imap/imap_reader.c — framing IMAP commands from bytes that arrive in
 * pieces: lines, literals ({n}, {n+}, ~{n}), continuations and limits.
 *
 * Every received byte is looked at once: lines are searched with memchr
 * from where the previous piece stopped, literal data is copied in bulk,
 * and the buffer grows geometrically, so a large literal fed in small
 * pieces costs linear time.  The buffer holds one command; it is dropped
 * (freed when nothing follows) as soon as the caller is done with it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/imap/imap_args.h"

#define DEF_MAX_LINE    (64u * 1024)
#define DEF_MAX_LITERAL (64u * 1024 * 1024)
#define DEF_MAX_COMMAND (80u * 1024 * 1024)
#define LIMIT_CAP       ((size_t)1 << 40)  /* keeps "limit + small" from overflowing */
#define LITERAL_MINUS_MAX 4096
#define KEEP_CAP        (64u * 1024)       /* a buffer bigger than this is not reused */
#define TAIL_MAX        32                 /* enough for "~{" 20 digits "+}" */
#define TAG_MAX         64

enum rstate {
    RS_LINE,            /* collecting a line of the command */
    RS_LITERAL,         /* collecting literal data */
    RS_SKIP_LINE,       /* dropping a rejected command: up to the line end */
    RS_SKIP_LITERAL,    /* dropping a rejected command: literal data */
};

struct imap_reader {
    imap_reader_limits lim;
    uint8_t *buf;               /* the command so far; owned */
    size_t len, cap;
    size_t line_start;          /* offset of the current line in buf */
    imap_literal_pos *lits;     /* the command's literals; owned */
    size_t nlits, lits_cap;
    enum rstate state;
    uint64_t lit_left;          /* RS_LITERAL / RS_SKIP_LITERAL */
    bool line_mode;
    bool done;                  /* buf holds a returned command */
    uint8_t tail[TAIL_MAX];     /* RS_SKIP_LINE: the last bytes of the line */
    size_t tail_len;
    char errtag[TAG_MAX + 1];
    size_t errtag_len;
};

static size_t limit_or(size_t v, size_t def)
{
    if (!v)
        return def;
    return v > LIMIT_CAP ? LIMIT_CAP : v;
}

void imap_reader_set_limits(imap_reader *r, const imap_reader_limits *lim)
{
    imap_reader_limits l = lim ? *lim : (imap_reader_limits){0};
    r->lim.max_line = limit_or(l.max_line, DEF_MAX_LINE);
    r->lim.max_literal = limit_or(l.max_literal, DEF_MAX_LITERAL);
    r->lim.max_command = limit_or(l.max_command, DEF_MAX_COMMAND);
    r->lim.literal_minus = l.literal_minus;
}

imap_reader *imap_reader_new(const imap_reader_limits *lim)
{
    imap_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    imap_reader_set_limits(r, lim);
    return r;
}

static void drop_buffers(imap_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
    free(r->lits);
    r->lits = NULL;
    r->lits_cap = 0;
}

void imap_reader_free(imap_reader *r)
{
    if (!r)
        return;
    drop_buffers(r);
    free(r);
}

/* Forget the command in buf; keep a small buffer only if it will be used. */
static void reset_command(imap_reader *r)
{
    r->len = 0;
    r->line_start = 0;
    r->nlits = 0;
    r->done = false;
    if (r->cap > KEEP_CAP || r->lits_cap > 64)
        drop_buffers(r);
}

static bool idle(const imap_reader *r)
{
    return r->len == 0 && r->state == RS_LINE;
}

void imap_reader_release(imap_reader *r)
{
    if (r->done)
        reset_command(r);
    r->errtag_len = 0;
    if (idle(r))
        drop_buffers(r);
}

bool imap_reader_busy(const imap_reader *r)
{
    return !r->done && !idle(r);
}

size_t imap_reader_memory(const imap_reader *r)
{
    return r->cap + r->lits_cap * sizeof *r->lits;
}

void imap_reader_line_mode(imap_reader *r, bool on)
{
    r->line_mode = on;
}

void imap_reader_command(const imap_reader *r, const uint8_t **p, size_t *n)
{
    *p = r->buf ? r->buf : (const uint8_t *)"";
    *n = r->len;
}

void imap_reader_literals(const imap_reader *r, const imap_literal_pos **lits,
                          size_t *n)
{
    *lits = r->lits;
    *n = r->nlits;
}

bool imap_reader_error_tag(const imap_reader *r, const char **tag, size_t *len)
{
    if (!r->errtag_len)
        return false;
    *tag = r->errtag;
    *len = r->errtag_len;
    return true;
}

static int reserve(imap_reader *r, size_t add)
{
    size_t need = r->len + add;
    if (need <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 256;
    if (cap < need)
        cap = need;
    uint8_t *b = realloc(r->buf, cap);
    if (!b)
        return -ENOMEM;
    r->buf = b;
    r->cap = cap;
    return 0;
}

static int append(imap_reader *r, const uint8_t *p, size_t n)
{
    if (!n)
        return 0;
    if (reserve(r, n) < 0)
        return -ENOMEM;
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    return 0;
}

static bool tag_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+", c);
}

/* Remember the tag of the command being dropped (its first line starts buf). */
static void save_errtag(imap_reader *r)
{
    size_t i = 0;
    r->errtag_len = 0;
    if (r->line_mode)
        return;
    while (i < r->len && i <= TAG_MAX && tag_char(r->buf[i]))
        i++;
    if (i == 0 || i > TAG_MAX || i >= r->len || r->buf[i] != ' ')
        return;
    memcpy(r->errtag, r->buf, i);
    r->errtag[i] = '\0';
    r->errtag_len = i;
}

/* Does the line s[0..n) end in a literal announcement?  Sets *size
 * (UINT64_MAX when it does not fit), *sync, *binary and *ann (offset of the
 * "{" or "~"). */
static bool literal_suffix(const uint8_t *s, size_t n, uint64_t *size,
                           bool *sync, bool *binary, size_t *ann)
{
    if (n < 3 || s[n - 1] != '}')
        return false;
    size_t e = n - 1;
    *sync = true;
    if (s[e - 1] == '+') {
        *sync = false;
        e--;
    }
    size_t b = e;
    while (b > 0 && s[b - 1] >= '0' && s[b - 1] <= '9')
        b--;
    if (b == e || b == 0 || s[b - 1] != '{')
        return false;
    uint64_t v = 0;
    for (size_t i = b; i < e; i++) {
        unsigned d = s[i] - '0';
        if (v > (UINT64_MAX - d) / 10) {
            v = UINT64_MAX;
            break;
        }
        v = v * 10 + d;
    }
    *size = v;
    *ann = b - 1;
    *binary = *ann > 0 && s[*ann - 1] == '~';
    if (*binary)
        (*ann)--;
    return true;
}

static void tail_add(imap_reader *r, const uint8_t *p, size_t n)
{
    if (n >= TAIL_MAX) {
        memcpy(r->tail, p + n - TAIL_MAX, TAIL_MAX);
        r->tail_len = TAIL_MAX;
        return;
    }
    if (r->tail_len + n > TAIL_MAX) {
        size_t drop = r->tail_len + n - TAIL_MAX;
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, p, n);
    r->tail_len += n;
}

/* Start dropping the rest of the command; the current line's bytes so far
 * (buf[line_start..len)) seed the tail so a literal at its end is seen. */
static void start_skip(imap_reader *r)
{
    r->tail_len = 0;
    tail_add(r, r->buf + r->line_start, r->len - r->line_start);
    r->len = 0;
    r->line_start = 0;
    r->nlits = 0;
    r->state = RS_SKIP_LINE;
}

/* A dropped line ended (tail holds its end, CR stripped). */
static void skip_line_end(imap_reader *r)
{
    uint64_t size;
    bool sync, binary;
    size_t ann;
    if (!r->line_mode &&
        literal_suffix(r->tail, r->tail_len, &size, &sync, &binary, &ann) && !sync) {
        r->state = RS_SKIP_LITERAL;
        r->lit_left = size;
    } else {
        r->state = RS_LINE;
    }
    r->tail_len = 0;
}

/* The command is dropped: remember its tag for the caller's BAD/NO. */
static imap_read_status fail(imap_reader *r, imap_read_status st)
{
    save_errtag(r);
    return st;
}

/* A line of the command ended (buf[line_start..len), line end not stored).
 * Returns the event, or IMAP_READ_MORE to go on reading. */
static imap_read_status line_end(imap_reader *r)
{
    size_t linelen = r->len - r->line_start;
    if (linelen > r->lim.max_line || r->len > r->lim.max_command) {
        /* One byte over (no CR before the LF): the line end has been read. */
        save_errtag(r);
        start_skip(r);
        skip_line_end(r);
        return IMAP_READ_LINE_TOO_LONG;
    }
    uint64_t size;
    bool sync, binary;
    size_t ann;
    /* An empty line on an idle reader has no buffer at all. */
    const uint8_t *line = r->buf ? r->buf + r->line_start : (const uint8_t *)"";
    if (r->line_mode || !literal_suffix(line, linelen, &size, &sync, &binary, &ann)) {
        r->done = true;
        return IMAP_READ_COMMAND;
    }
    /* The announcing line is complete, so r->len <= max_command here. */
    bool too_big = size > r->lim.max_literal ||
                   (!sync && r->lim.literal_minus && size > LITERAL_MINUS_MAX) ||
                   r->len + 2 > r->lim.max_command ||
                   size > r->lim.max_command - r->len - 2;
    if (too_big) {
        save_errtag(r);
        r->len = 0;
        r->line_start = 0;
        r->nlits = 0;
        if (sync) {
            r->state = RS_LINE;
        } else {
            r->state = RS_SKIP_LITERAL;
            r->lit_left = size;
        }
        return IMAP_READ_LITERAL_TOO_BIG;
    }
    if (r->nlits == r->lits_cap) {
        size_t nc = r->lits_cap ? r->lits_cap * 2 : 4;
        imap_literal_pos *l = realloc(r->lits, nc * sizeof *l);
        if (!l)
            goto nomem;
        r->lits = l;
        r->lits_cap = nc;
    }
    if (append(r, (const uint8_t *)"\r\n", 2) < 0)
        goto nomem;
    r->lits[r->nlits++] = (imap_literal_pos){
        .ann = r->line_start + ann, .off = r->len, .len = (size_t)size, .binary = binary,
    };
    r->lit_left = size;
    r->state = RS_LITERAL;
    if (!size) {
        r->state = RS_LINE;
        r->line_start = r->len;
    }
    return sync ? IMAP_READ_CONTINUE : IMAP_READ_MORE;
nomem:
    /* Out of memory is treated as a command too big to hold. */
    save_errtag(r);
    r->len = 0;
    r->line_start = 0;
    r->nlits = 0;
    if (sync) {
        r->state = RS_LINE;
    } else {
        r->state = RS_SKIP_LITERAL;
        r->lit_left = size;
    }
    return IMAP_READ_LITERAL_TOO_BIG;
}

imap_read_status imap_reader_feed(imap_reader *r, const uint8_t *p, size_t n,
                                  size_t *used)
{
    imap_read_status st = IMAP_READ_MORE;
    size_t i = 0;
    if (r->done)
        reset_command(r);
    r->errtag_len = 0;
    while (i < n && st == IMAP_READ_MORE) {
        switch (r->state) {
        case RS_LINE: {
            /* Room for the line's bytes plus a CR before the LF. */
            size_t room = r->lim.max_line + 1 - (r->len - r->line_start);
            if (r->len > r->lim.max_command) {
                room = 0;
            } else if (room > r->lim.max_command + 1 - r->len) {
                room = r->lim.max_command + 1 - r->len;
            }
            size_t span = n - i < room + 1 ? n - i : room + 1;
            const uint8_t *lf = memchr(p + i, '\n', span);
            size_t take = lf ? (size_t)(lf - (p + i)) : (span > room ? room : span);
            if (append(r, p + i, take) < 0) {
                i += take;
                st = fail(r, IMAP_READ_LINE_TOO_LONG);
                start_skip(r);
                break;
            }
            i += take;
            if (lf) {
                i++;
                if (r->len > r->line_start && r->buf[r->len - 1] == '\r')
                    r->len--;
                st = line_end(r);
            } else if (span > room) {
                st = fail(r, IMAP_READ_LINE_TOO_LONG);
                start_skip(r);
            }
            break;
        }
        case RS_LITERAL: {
            size_t take = n - i < r->lit_left ? n - i : (size_t)r->lit_left;
            if (append(r, p + i, take) < 0) {
                /* Keep the framing: drop the rest of this literal. */
                st = fail(r, IMAP_READ_LITERAL_TOO_BIG);
                r->len = r->line_start = r->nlits = 0;
                r->state = RS_SKIP_LITERAL;
                break;
            }
            i += take;
            r->lit_left -= take;
            if (!r->lit_left) {
                r->state = RS_LINE;
                r->line_start = r->len;
            }
            break;
        }
        case RS_SKIP_LINE: {
            const uint8_t *lf = memchr(p + i, '\n', n - i);
            size_t take = lf ? (size_t)(lf - (p + i)) : n - i;
            tail_add(r, p + i, take);
            i += take;
            if (lf) {
                i++;
                if (r->tail_len && r->tail[r->tail_len - 1] == '\r')
                    r->tail_len--;
                skip_line_end(r);
            }
            break;
        }
        case RS_SKIP_LITERAL: {
            size_t take = n - i < r->lit_left ? n - i : (size_t)r->lit_left;
            i += take;
            r->lit_left -= take;
            if (!r->lit_left) {
                r->state = RS_SKIP_LINE;
                r->tail_len = 0;
            }
            break;
        }
        }
    }
    *used = i;
    if (!r->done && r->len == 0)
        drop_buffers(r);        /* nothing partial: hold no memory */
    return st;
}
