/* core/search/sindex_words.h — the search index's word lists (private to
 * core/search/sindex.c; see there, "Certain matches").
 *
 * While a segment is built, every word of every message body goes into a
 * word table: word -> the UIDs (ascending) of the messages whose body has
 * it.  When the segment is written, the words in enough of its messages
 * are kept, each under a 32-bit key above every trigram's. */
#ifndef RINGMAIL_CORE_SEARCH_SINDEX_WORDS_H
#define RINGMAIL_CORE_SEARCH_SINDEX_WORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Words are maximal runs of ASCII letters and digits and of bytes of
 * multibyte UTF-8 characters, SWORD_MIN..SWORD_MAX bytes long (shorter
 * ones have no trigram to narrow by, longer ones are rarely searched). */
#define SWORD_MIN 3u
#define SWORD_MAX 32u
/* Word keys start here: trigram keys are 24-bit. */
#define SWORD_KEY_BASE 0x01000000u

typedef struct swords swords;

swords *swords_new(void);
void swords_free(swords *w);
/* Every word of text (folded UTF-8, as the evaluator searches it) is in
 * the message uid.  UIDs come in ascending order (equal: the same
 * message again).  0 or -ENOMEM. */
int swords_add_text(swords *w, uint32_t uid, const uint8_t *text, size_t len);
/* One word (SWORD_MIN..SWORD_MAX bytes) is in the message uid. */
int swords_add(swords *w, const uint8_t *word, size_t len, uint32_t uid);

/* A word to write. */
typedef struct sword_out {
    uint32_t key;
    uint8_t len;
    const uint8_t *word;
    const uint32_t *uids;
    uint32_t n;
} sword_out;
/* The words in at least min messages, sorted by key; words whose keys
 * collide are left out (a reader must never take one word's list for
 * another's).  *out is malloc'd; its pointers point into w.  0 or -ENOMEM. */
int swords_finish(swords *w, uint32_t min, sword_out **out, size_t *n);

/* The key of a word, and whether s as a whole is a word the lists can
 * hold (a needle that may be looked up). */
uint32_t swords_key(const uint8_t *s, size_t len);
bool swords_is_word(const uint8_t *s, size_t len);

#endif
