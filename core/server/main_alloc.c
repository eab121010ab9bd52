/* core/server/main_alloc.c — ringmaild's settings of its allocator,
 * jemalloc (linked unless the build is sanitized).
 *
 * oversize_threshold:0: jemalloc otherwise serves every allocation of 8 MB
 * and more from an arena that returns its pages to the kernel as soon as
 * it is freed.  A SORT or THREAD over 10^6 messages allocates some 100 MB
 * of keys, and the next one got fresh zeroed pages again: ~25,000 page
 * faults a query, a third of a SORT's time.  Without the threshold such
 * blocks are kept and reused like smaller ones, and given back after
 * dirty_decay_ms of not being used.
 * dirty_decay_ms:1000 instead of jemalloc's 10 s: with 10 s, what a big
 * STORE or SORT had freed still counted in the server's RSS seconds later
 * (test_imap_bulk saw 8.9 MB where it allows 8); with 1 s it is given back
 * at once, and a client asking again within the second still reuses the
 * blocks (sort-fresh over 10^6 messages, same session: p50 153 ms against
 * 136 ms with 10 s, and 190-200 ms with the threshold).
 * background_thread:true: that giving back runs on jemalloc's own thread;
 * otherwise it runs inside whichever malloc or free comes due, on a worker,
 * which then stalls every session on it for as long as returning a few
 * hundred MB takes.  jemalloc turns it off in a forked child (its threads
 * are not copied), so a server that the supervisor forks turns it on again
 * (ringmaild_alloc_child). */
#include "core/server/main_alloc.h"

#ifdef RINGMAIL_JEMALLOC
#include <stdbool.h>
#include <jemalloc/jemalloc.h>

const char *malloc_conf = "oversize_threshold:0,background_thread:true,dirty_decay_ms:1000";

void ringmaild_alloc_child(void)
{
    bool on = true;
    /* nothing to do on failure: purging then runs inline, as by default */
    (void)mallctl("background_thread", NULL, NULL, &on, sizeof on);
}
#else
void ringmaild_alloc_child(void)
{
}
#endif
