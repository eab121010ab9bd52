/* core/server/main_alloc.h — ringmaild's allocator settings (main_alloc.c). */
#ifndef RINGMAIL_CORE_SERVER_MAIN_ALLOC_H
#define RINGMAIL_CORE_SERVER_MAIN_ALLOC_H

/* In a server forked by the supervisor: what jemalloc turns off in a child
 * of fork (its background thread) on again. */
void ringmaild_alloc_child(void);

#endif
