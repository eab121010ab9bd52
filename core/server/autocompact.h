/* core/server/autocompact.h — compaction of mailboxes by the server itself,
 * on a thread of its own (core/server/autocompact.c). */
#ifndef RINGMAIL_CORE_SERVER_AUTOCOMPACT_H
#define RINGMAIL_CORE_SERVER_AUTOCOMPACT_H

#include <stdint.h>

#include "store/store.h"

typedef struct autocompact autocompact;

/* Compact a mailbox once its dead log bytes (expunged messages, superseded
 * flag records) are at least min_dead and at least percent of its log.
 * percent 0: never (*out is NULL).  0 or -errno. */
int autocompact_start(uint64_t min_dead, unsigned percent, autocompact **out);
/* Stop the thread (a compaction running ends first; queued ones are
 * dropped) and free.  NULL is fine. */
void autocompact_stop(autocompact *ac);
/* After a change to mb: queue it when it is worth compacting.  Cheap (the
 * index header's counters); from any thread; ac may be NULL.  `who` names
 * the mailbox in the log. */
void autocompact_consider(autocompact *ac, store_mbox *mb, const char *who);

#endif
