/* store/names.h — numbers for byte strings: the same bytes get the same
 * number, numbers are dense from 0 in the order the strings were first
 * added.  THREAD works on numbers instead of Message-IDs (an array indexed
 * by number instead of a hash table per query); the store keeps one table
 * per generation (store/memo.c), a caller may keep its own.
 *
 * The table owns copies of the bytes, in chunks that never move: a pointer
 * from store_names_get stays valid until store_names_free.  No call does
 * work in proportion to the table's size: a bigger table's slots move
 * over a few per add, and the number -> bytes map is in blocks that never
 * move.  Not locked: the owner serializes calls. */
#ifndef RINGMAIL_STORE_NAMES_H
#define RINGMAIL_STORE_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store_names {
    struct store_names_slot *slot;  /* open addressing, at most half full */
    size_t cap, n;
    struct store_names_slot *old;   /* the table before it grew, its slots
                                       moving into slot a few per add */
    size_t oldcap, moved;
    const uint8_t ***rec;           /* number -> [u32 length][bytes], in
                                       blocks */
    size_t caprec;                  /* blocks rec has room for */
    struct store_names_chunk *chunk;
    size_t bytes;                   /* memory held, for the owner's budget */
} store_names;

/* The number of p[0..len): found, or (with add) given now.  0, -ENOENT
 * (absent and not add), -ENOMEM, or -E2BIG (2^31 numbers given). */
int store_names_find(store_names *t, const void *p, size_t len, bool add, uint32_t *num);
/* The bytes numbered num; false if no string has it. */
bool store_names_get(const store_names *t, uint32_t num, const uint8_t **p, size_t *len);
/* What one more string of len bytes may cost at most (for a budget). */
size_t store_names_cost(const store_names *t, size_t len);
void store_names_free(store_names *t);

/* The hash the table uses (64 bits, eight bytes a step), for callers that
 * keep tables of their own. */
uint64_t store_names_hash(const void *p, size_t n);

#endif
