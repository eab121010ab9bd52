/* store/assert.h — assertions that stay in every build.
 *
 * RM_ASSERT(cond) checks a cheap invariant (O(1), no loop over data) at a
 * boundary of the store, the runtime or the session code, in release
 * builds too: a broken invariant found where it breaks is a core dump
 * pointing at the bug; left alone it is a corrupt mailbox or a stray write
 * found much later.  On failure it prints one line to stderr (file:line,
 * function, the expression) and calls abort(), so a core is written.
 *
 * It is not error handling: bad input from a client or a file and failed
 * I/O are errors and are returned as such; an RM_ASSERT states what the
 * code itself guarantees.  Checks that cost more than a predicted branch
 * (walking a list, re-sorting, re-checksumming) stay plain assert(), which
 * release builds (NDEBUG) compile out.  See docs/server-design-notes.md.
 *
 * It lives in store/ because store/ is the bottom layer: every folder may
 * include it (net/ has a rule for this one file in tools/check-layers.sh).
 * Header only, so it adds no link dependency.
 */
#ifndef RINGMAIL_STORE_ASSERT_H
#define RINGMAIL_STORE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

/* Out of line and cold, so the call sites stay small and the compiler lays
 * the failure path out of the way; one fprintf, so the line is written in
 * one piece even when several threads fail at once. */
__attribute__((noreturn, cold, noinline, unused))
static void rm_assert_fail_(const char *file, int line, const char *func,
                            const char *expr, const char *msg)
{
    fprintf(stderr, "%s:%d: %s: assertion failed: %s%s%s\n", file, line,
            func, expr, msg ? ": " : "", msg ? msg : "");
    abort();
}

#define RM_ASSERT(cond)                                                      \
    ((void)(__builtin_expect(!!(cond), 1) ? 0                               \
            : (rm_assert_fail_(__FILE__, __LINE__, __func__, #cond, NULL), 0)))

/* The same with a word on what the broken invariant means. */
#define RM_ASSERT_MSG(cond, msg)                                             \
    ((void)(__builtin_expect(!!(cond), 1) ? 0                               \
            : (rm_assert_fail_(__FILE__, __LINE__, __func__, #cond, (msg)), 0)))

#endif
