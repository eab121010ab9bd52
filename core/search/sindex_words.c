/* core/search/sindex_words.c — the word table of a segment being built.
 * See sindex_words.h. */
#include "core/search/sindex_words.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct wentry {
    uint32_t hash;
    uint32_t off;           /* the word's bytes in the arena */
    uint32_t len;
    uint32_t n, cap;
    uint32_t *uids;
} wentry;

struct swords {
    wentry *ents;
    size_t nents, capents;
    uint32_t *slots;        /* index + 1 into ents; 0 empty */
    size_t nslots;          /* power of two */
    uint8_t *arena;
    size_t arena_len, arena_cap;
};

static bool word_byte(uint8_t c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

/* FNV-1a: the keys are written to disk, so this function is part of the
 * segment format and must never change. */
static uint32_t fnv1a(const uint8_t *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

uint32_t swords_key(const uint8_t *s, size_t len)
{
    return SWORD_KEY_BASE + fnv1a(s, len) % (UINT32_MAX - SWORD_KEY_BASE);
}

bool swords_is_word(const uint8_t *s, size_t len)
{
    if (len < SWORD_MIN || len > SWORD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!word_byte(s[i]))
            return false;
    return true;
}

swords *swords_new(void)
{
    return calloc(1, sizeof(swords));
}

void swords_free(swords *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->nents; i++)
        free(w->ents[i].uids);
    free(w->ents);
    free(w->slots);
    free(w->arena);
    free(w);
}

static int rehash(swords *w)
{
    size_t n = w->nslots ? w->nslots * 2 : 4096;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < w->nents; i++) {
        size_t h = w->ents[i].hash & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = (uint32_t)i + 1;
    }
    free(w->slots);
    w->slots = s;
    w->nslots = n;
    return 0;
}

static wentry *find_or_add(swords *w, const uint8_t *word, size_t len)
{
    if ((w->nents + 1) * 2 > w->nslots && rehash(w) < 0)
        return NULL;
    uint32_t hash = fnv1a(word, len);
    size_t h = hash & (w->nslots - 1);
    for (; w->slots[h]; h = (h + 1) & (w->nslots - 1)) {
        wentry *e = &w->ents[w->slots[h] - 1];
        if (e->hash == hash && e->len == len && !memcmp(w->arena + e->off, word, len))
            return e;
    }
    if (w->nents == w->capents) {
        size_t c = w->capents ? w->capents * 2 : 1024;
        wentry *a = realloc(w->ents, c * sizeof *a);
        if (!a)
            return NULL;
        w->ents = a;
        w->capents = c;
    }
    if (w->arena_len + len > w->arena_cap) {
        size_t c = w->arena_cap ? w->arena_cap * 2 : 65536;
        while (c < w->arena_len + len)
            c *= 2;
        if (c > UINT32_MAX)
            return NULL;
        uint8_t *a = realloc(w->arena, c);
        if (!a)
            return NULL;
        w->arena = a;
        w->arena_cap = c;
    }
    memcpy(w->arena + w->arena_len, word, len);
    wentry *e = &w->ents[w->nents];
    *e = (wentry){.hash = hash, .off = (uint32_t)w->arena_len, .len = (uint32_t)len};
    w->arena_len += len;
    w->slots[h] = (uint32_t)++w->nents;
    return e;
}

int swords_add(swords *w, const uint8_t *word, size_t len, uint32_t uid)
{
    if (len < SWORD_MIN || len > SWORD_MAX)
        return 0;
    wentry *e = find_or_add(w, word, len);
    if (!e)
        return -ENOMEM;
    if (e->n && e->uids[e->n - 1] >= uid)
        return 0;           /* this message has it already */
    if (e->n == e->cap) {
        uint32_t c = e->cap ? e->cap * 2 : 4;
        uint32_t *a = realloc(e->uids, c * sizeof *a);
        if (!a)
            return -ENOMEM;
        e->uids = a;
        e->cap = c;
    }
    e->uids[e->n++] = uid;
    return 0;
}

int swords_add_text(swords *w, uint32_t uid, const uint8_t *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && !word_byte(text[i]))
            i++;
        size_t start = i;
        while (i < len && word_byte(text[i]))
            i++;
        int rc = swords_add(w, text + start, i - start, uid);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int cmp_key(const void *a, const void *b)
{
    uint32_t x = ((const sword_out *)a)->key, y = ((const sword_out *)b)->key;
    return x < y ? -1 : x > y;
}

int swords_finish(swords *w, uint32_t min, sword_out **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t k = 0;
    for (size_t i = 0; i < w->nents; i++)
        k += w->ents[i].n >= min;
    if (!k)
        return 0;
    sword_out *o = malloc(k * sizeof *o);
    if (!o)
        return -ENOMEM;
    k = 0;
    for (size_t i = 0; i < w->nents; i++) {
        const wentry *e = &w->ents[i];
        if (e->n < min)
            continue;
        o[k++] = (sword_out){.key = swords_key(w->arena + e->off, e->len),
                             .len = (uint8_t)e->len, .word = w->arena + e->off,
                             .uids = e->uids, .n = e->n};
    }
    qsort(o, k, sizeof *o, cmp_key);
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        size_t j = i + 1;
        while (j < k && o[j].key == o[i].key)
            j++;
        if (j == i + 1)
            o[m++] = o[i];  /* a key shared by two words: neither is kept */
        i = j;
    }
    *out = o;
    *n = m;
    return 0;
}
