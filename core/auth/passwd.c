/* core/auth/passwd.c — the Dovecot-format passwd-file. */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/auth/passwd.h"
#include "core/auth/sasl_crypto.h"
#include "store/utf8.h"
#include "store/base64.h"

#ifdef RINGMAIL_HAVE_SODIUM
#include <sodium.h>
#endif

struct pw_user {
    char *name;
    char *secret;           /* with its {SCHEME} prefix, if any */
    char *extra;            /* the fields after the seventh ':' (Dovecot's
                               extra fields: "userdb_quota_rule=*:storage=1G
                               ..."), or NULL */
};

struct passwd_db {
    char *path;
    pthread_mutex_t lock;
    struct pw_user *users;
    size_t n;
    struct pw_user **folded;    /* users sorted by ASCII-case-folded name */
    struct stat st;
    bool loaded;
    bool scram_everyone;    /* every user has SCRAM-capable credentials */
    uint64_t generation;    /* bumped on every (re-)read */
};

static void users_free(struct pw_user *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(u[i].name);
        free(u[i].secret);
        free(u[i].extra);
    }
    free(u);
}

static int cmp_user(const void *a, const void *b)
{
    return strcmp(((const struct pw_user *)a)->name, ((const struct pw_user *)b)->name);
}

/* Parse the file into a sorted array. */
static int load_file(const char *path, struct pw_user **out, size_t *nout)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == EACCES ? -EIO : -errno;
    struct pw_user *v = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len || line[0] == '#')
            continue;
        char *c1 = strchr(line, ':');
        if (!c1 || c1 == line)
            continue;           /* not a user line */
        *c1 = '\0';
        char *secret = c1 + 1;
        char *c2 = strchr(secret, ':');
        char *extra = NULL;
        if (c2) {
            *c2 = '\0';
            /* uid:gid:gecos:home:shell:extra — the extra fields are the
             * rest of the line, ':' included */
            extra = c2 + 1;
            for (int k = 0; k < 5 && extra; k++) {
                extra = strchr(extra, ':');
                if (extra)
                    extra++;
            }
            if (extra && !*extra)
                extra = NULL;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct pw_user *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
        }
        v[n].name = strdup(line);
        v[n].secret = strdup(secret);
        v[n].extra = extra ? strdup(extra) : NULL;
        if (!v[n].name || !v[n].secret || (extra && !v[n].extra)) {
            free(v[n].name);
            free(v[n].secret);
            free(v[n].extra);
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    /* getline says -1 for a read error as for the end: a file that could
     * not be read whole (EISDIR, EIO) is not a file with fewer users, whom
     * mail delivery would then refuse as unknown */
    if (rc == 0 && ferror(f))
        rc = -EIO;
    free(line);
    fclose(f);
    if (rc < 0) {
        users_free(v, n);
        return rc;
    }
    if (n)          /* qsort must not get NULL, even for 0 elements */
        qsort(v, n, sizeof *v, cmp_user);
    *out = v;
    *nout = n;
    return 0;
}

int passwd_open(const char *path, passwd_db **out)
{
    passwd_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return -ENOMEM;
    }
    pthread_mutex_init(&db->lock, NULL);
    *out = db;
    return 0;
}

void passwd_close(passwd_db *db)
{
    if (!db)
        return;
    users_free(db->users, db->n);
    free(db->folded);
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}

static bool scram_capable(const char *secret)
{
    passwd_scram k;
    if (!strncmp(secret, "{SCRAM-SHA-256}", 15))
        return passwd_scram_parse(secret + 15, &k) == 0;
    return !strncmp(secret, "{PLAIN}", 7) || !strncmp(secret, "{CLEAR}", 7);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int cmp_folded(const void *a, const void *b)
{
    return strcasecmp((*(struct pw_user *const *)a)->name, (*(struct pw_user *const *)b)->name);
}

/* Re-read the file if it changed (lock held). */
static int refresh(passwd_db *db)
{
    /* One stat per login: a changed file takes effect at once. */
    struct stat st;
    /* -EACCES means "wrong password" to callers: a file we may not read
     * is an operator's problem, reported as such (-EIO).  So is a file
     * read before that is gone (it is replaced by rename, never removed):
     * -ENOENT would say "no such user" of everyone, and mail delivery
     * would refuse them all as unknown.  A file that never existed is
     * still a directory without users. */
    if (stat(db->path, &st) < 0)
        return errno == EACCES || (errno == ENOENT && db->loaded) ? -EIO : -errno;
    if (db->loaded && same_file(&st, &db->st))
        return 0;
    struct pw_user *v;
    size_t n;
    int rc = load_file(db->path, &v, &n);
    if (rc < 0)
        return rc;
    struct pw_user **folded = n ? malloc(n * sizeof *folded) : NULL;
    if (n && !folded) {
        users_free(v, n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        folded[i] = &v[i];
    if (n)
        qsort(folded, n, sizeof *folded, cmp_folded);
    users_free(db->users, db->n);
    free(db->folded);
    db->users = v;
    db->n = n;
    db->folded = folded;
    db->scram_everyone = true;
    for (size_t i = 0; i < n; i++)
        if (!scram_capable(v[i].secret))
            db->scram_everyone = false;
    db->st = st;
    db->loaded = true;
    db->generation++;
    return 0;
}

uint64_t passwd_generation(passwd_db *db)
{
    pthread_mutex_lock(&db->lock);
    uint64_t g = refresh(db) == 0 ? db->generation : 0;
    pthread_mutex_unlock(&db->lock);
    return g;
}

/* ---- SCRAM-SHA-256 ---- */

static pthread_once_t proc_key_once = PTHREAD_ONCE_INIT;
static uint8_t proc_key[32];

static void proc_key_init(void)
{
    if (rm_random(proc_key, sizeof proc_key) < 0)
        abort();        /* no randomness: nothing safe to do */
}

void passwd_scram_salt(const char *user, uint8_t salt[16])
{
    uint8_t mac[RM_SHA256_LEN];
    pthread_once(&proc_key_once, proc_key_init);
    rm_hmac_sha256(proc_key, sizeof proc_key, user, strlen(user), mac);
    memcpy(salt, mac, 16);
}

int passwd_scram_derive(const char *password, size_t pwlen, const uint8_t *salt,
                        size_t salt_len, unsigned iterations, passwd_scram *out)
{
    if (salt_len > PASSWD_SCRAM_SALT_MAX || iterations < 1 ||
        iterations > PASSWD_SCRAM_MAX_ITERATIONS)
        return -EINVAL;
    uint8_t sp[RM_SHA256_LEN], ck[RM_SHA256_LEN];
    rm_pbkdf2_sha256(password, pwlen, salt, salt_len, iterations, sp);
    rm_hmac_sha256(sp, sizeof sp, "Client Key", 10, ck);
    rm_sha256(ck, sizeof ck, out->stored_key);
    rm_hmac_sha256(sp, sizeof sp, "Server Key", 10, out->server_key);
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iterations = iterations;
    memset(sp, 0, sizeof sp);
    memset(ck, 0, sizeof ck);
    return 0;
}

/* One base64 field of a SCRAM secret, up to ',' or the end. */
static int scram_field(const char **s, uint8_t *out, size_t max, size_t *len)
{
    const char *e = strchr(*s, ',');
    size_t n = e ? (size_t)(e - *s) : strlen(*s);
    if (n / 4 * 3 > max + 2)
        return -EINVAL;
    uint8_t buf[PASSWD_SCRAM_SALT_MAX + 3];
    long r = store_b64_decode(*s, n, buf);
    if (r <= 0 || (size_t)r > max)
        return -EINVAL;
    memcpy(out, buf, (size_t)r);
    *len = (size_t)r;
    *s += n + (e ? 1 : 0);
    return e ? 1 : 0;
}

int passwd_scram_parse(const char *s, passwd_scram *out)
{
    char *end;
    if (*s < '1' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long it = strtoul(s, &end, 10);
    if (errno || *end != ',' || it > PASSWD_SCRAM_MAX_ITERATIONS)
        return -EINVAL;
    out->iterations = (unsigned)it;
    s = end + 1;
    size_t kl;
    if (scram_field(&s, out->salt, sizeof out->salt, &out->salt_len) != 1 ||
        scram_field(&s, out->stored_key, 32, &kl) != 1 || kl != 32 ||
        scram_field(&s, out->server_key, 32, &kl) != 0 || kl != 32)
        return -EINVAL;
    return 0;
}

static int scram_check(const char *s, const char *password)
{
    passwd_scram want, got;
    if (passwd_scram_parse(s, &want) < 0)
        return -EACCES;
    passwd_scram_derive(password, strlen(password), want.salt, want.salt_len,
                        want.iterations, &got);
    /* Both compared always (no short cut): constant time. */
    int ok = (int)rm_memeq(want.stored_key, got.stored_key, 32) &
             (int)rm_memeq(want.server_key, got.server_key, 32);
    return ok ? 0 : -EACCES;
}

static bool ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

#ifdef RINGMAIL_HAVE_SODIUM
static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_setup(void)
{
    if (sodium_init() < 0)
        abort();
}
#endif

/* {SSHA}: base64(SHA1(password salt) salt), what slappasswd writes by
 * default (RFC 2307's userPassword with OpenLDAP's salted scheme); {SHA}:
 * base64(SHA1(password)).  Salt of any length, as OpenLDAP reads it. */
static int ssha_check(const char *b64, const char *password, bool salted)
{
    size_t n = strlen(b64);
    uint8_t *raw = malloc(n / 4 * 3 + 4);
    if (!raw)
        return -ENOMEM;
    long len = store_b64_decode(b64, n, raw);
    int rc = -EACCES;
    if (len >= RM_SHA1_LEN && (salted || len == RM_SHA1_LEN)) {
        size_t plen = strlen(password), slen = (size_t)len - RM_SHA1_LEN;
        uint8_t *buf = malloc(plen + slen + 1);
        if (!buf) {
            rc = -ENOMEM;
        } else {
            uint8_t got[RM_SHA1_LEN];
            memcpy(buf, password, plen);
            memcpy(buf + plen, raw + RM_SHA1_LEN, slen);
            rm_sha1(buf, plen + slen, got);
            rc = rm_memeq(got, raw, RM_SHA1_LEN) ? 0 : -EACCES;
            memset(buf, 0, plen + slen);
            free(buf);
        }
    }
    free(raw);
    return rc;
}

static int check_secret(const char *secret, const char *password)
{
    if (!strncasecmp(secret, "{SSHA}", 6))
        return ssha_check(secret + 6, password, true);
    if (!strncasecmp(secret, "{SHA}", 5))
        return ssha_check(secret + 5, password, false);
    if (!strncmp(secret, "{PLAIN}", 7))
        return ct_equal(secret + 7, password) ? 0 : -EACCES;
    if (!strncmp(secret, "{CLEAR}", 7))
        return ct_equal(secret + 7, password) ? 0 : -EACCES;
    if (!strncmp(secret, "{SCRAM-SHA-256}", 15))
        return scram_check(secret + 15, password);
    if (!strncmp(secret, "{ARGON2ID}", 10) || !strncmp(secret, "{ARGON2I}", 9)) {
#ifdef RINGMAIL_HAVE_SODIUM
        const char *h = strchr(secret, '}') + 1;
        /* The stored string names its own variant; refuse a mismatch. */
        if (strncmp(h, secret[8] == 'D' ? "$argon2id$" : "$argon2i$",
                    secret[8] == 'D' ? 10 : 9))
            return -EACCES;
        pthread_once(&sodium_once, sodium_setup);
        return crypto_pwhash_str_verify(h, password, strlen(password)) == 0
                   ? 0 : -EACCES;
#else
        return -EACCES;     /* cannot verify: never matches */
#endif
    }
    const char *hash = secret;
    if (secret[0] == '{') {
        const char *end = strchr(secret, '}');
        if (!end)
            return -EACCES;
        static const char *const crypt_schemes[] = {
            "{SHA512-CRYPT}", "{SHA256-CRYPT}", "{BLF-CRYPT}", "{CRYPT}",
            "{MD5-CRYPT}", NULL};
        size_t sl = (size_t)(end - secret) + 1;
        bool known = false;
        for (int i = 0; crypt_schemes[i]; i++)
            if (strlen(crypt_schemes[i]) == sl && !strncmp(secret, crypt_schemes[i], sl))
                known = true;
        if (!known)
            return -EACCES;     /* a scheme we cannot verify never matches */
        hash = end + 1;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -ENOMEM;
    const char *out = crypt_r(password, hash, cd);
    int rc = out && out[0] != '*' && ct_equal(out, hash) ? 0 : -EACCES;
    free(cd);
    return rc;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char *dummy_secret;      /* never freed: one per process */

static void dummy_init(void)
{
    uint8_t r[16];
    char pw[store_b64_enc_len(16) + 1];
    if (rm_random(r, sizeof r) == 0) {
        store_b64_encode(r, sizeof r, pw);
        if (passwd_hash(PASSWD_DEFAULT_SCHEME, pw, &dummy_secret) < 0)
            dummy_secret = NULL;
    }
}

/* ---- how long a real verification takes ----
 * The durations of the last TIMING_SAMPLES verifications of secrets of the
 * default scheme (what new users get), process-wide: an unknown user's
 * answer waits one of them, drawn at random, so its timing looks like a
 * real check's. */
#define TIMING_SAMPLES 64

static pthread_mutex_t timing_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t timing_us[TIMING_SAMPLES];
static size_t timing_n, timing_next;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool default_scheme(const char *secret)
{
    size_t n = strlen(PASSWD_DEFAULT_SCHEME);
    return secret[0] == '{' && !strncmp(secret + 1, PASSWD_DEFAULT_SCHEME, n) &&
           secret[n + 1] == '}';
}

static void timing_record(uint64_t us)
{
    pthread_mutex_lock(&timing_lock);
    timing_us[timing_next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    timing_next = (timing_next + 1) % TIMING_SAMPLES;
    if (timing_n < TIMING_SAMPLES)
        timing_n++;
    pthread_mutex_unlock(&timing_lock);
}

/* A real check of the dummy secret, timed: the first sample. */
static void timing_seed(const char *password)
{
    pthread_once(&dummy_once, dummy_init);
    const char *sec = dummy_secret ? dummy_secret : "{SHA512-CRYPT}$6$aaaaaaaaaaaaaaaa$";
    uint64_t t0 = mono_us();
    check_secret(sec, password);
    timing_record(mono_us() - t0);
}

static unsigned timing_draw_ms(const char *password)
{
    pthread_mutex_lock(&timing_lock);
    size_t n = timing_n;
    pthread_mutex_unlock(&timing_lock);
    if (!n)         /* nothing measured yet: measure once (by each thread
                     * that gets here first, at most one per pool thread) */
        timing_seed(password);
    uint32_t r = 0;
    if (rm_random(&r, sizeof r) < 0)
        r = (uint32_t)mono_us();
    pthread_mutex_lock(&timing_lock);
    uint32_t us = timing_n ? timing_us[r % timing_n] : 0;
    pthread_mutex_unlock(&timing_lock);
    return (us + 500) / 1000;
}

/* The user's secret (malloc'd) in *secret, NULL if there is no such user. */
static int find_secret(passwd_db *db, const char *user, char **secret)
{
    pthread_mutex_lock(&db->lock);
    int rc = refresh(db);
    *secret = NULL;
    if (rc == 0) {
        struct pw_user key = {.name = (char *)user};
        struct pw_user *u = db->n ? bsearch(&key, db->users, db->n, sizeof key, cmp_user)
                                  : NULL;
        if (u && !(*secret = strdup(u->secret)))
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&db->lock);
    return rc;
}

static int verify_known(char *secret, const char *password)
{
    bool timed = default_scheme(secret);
    uint64_t t0 = timed ? mono_us() : 0;
    int rc = check_secret(secret, password);
    if (timed)
        timing_record(mono_us() - t0);
    memset(secret, 0, strlen(secret));
    free(secret);
    return rc;
}

int passwd_verify(passwd_db *db, const char *user, const char *password)
{
    char *secret;
    int rc = find_secret(db, user, &secret);
    if (rc < 0)
        return rc;
    if (!secret) {
        /* Spend the time of a real check (of the default scheme, which
         * new users get) so that timing does not tell who exists: this
         * caller cannot wait on a timer instead (passwd_verify_timed). */
        pthread_once(&dummy_once, dummy_init);
        check_secret(dummy_secret ? dummy_secret : "{SHA512-CRYPT}$6$aaaaaaaaaaaaaaaa$",
                     password);
        return -EACCES;
    }
    return verify_known(secret, password);
}

int passwd_verify_timed(passwd_db *db, const char *user, const char *password,
                        unsigned *answer_delay_ms)
{
    char *secret;
    *answer_delay_ms = 0;
    int rc = find_secret(db, user, &secret);
    if (rc < 0)
        return rc;
    if (!secret) {
        *answer_delay_ms = timing_draw_ms(password);
        return -EACCES;
    }
    return verify_known(secret, password);
}

int passwd_check_secret(const char *secret, const char *password)
{
    return check_secret(secret, password);
}

unsigned passwd_unknown_delay_ms(const char *password)
{
    return timing_draw_ms(password);
}

const char *passwd_schemes(void)
{
#ifdef RINGMAIL_HAVE_SODIUM
    return "ARGON2ID SHA512-CRYPT SHA256-CRYPT BLF-CRYPT SCRAM-SHA-256 PLAIN CLEAR";
#else
    return "SHA512-CRYPT SHA256-CRYPT BLF-CRYPT SCRAM-SHA-256 PLAIN CLEAR";
#endif
}

static int with_prefix(const char *scheme, const char *secret, char **out)
{
    size_t n = strlen(scheme) + strlen(secret) + 3;
    if (!(*out = malloc(n)))
        return -ENOMEM;
    snprintf(*out, n, "{%s}%s", scheme, secret);
    return 0;
}

static int hash_scram(const char *password, char **out)
{
    uint8_t salt[16];
    passwd_scram k;
    int rc = rm_random(salt, sizeof salt);
    if (rc < 0)
        return rc;
    passwd_scram_derive(password, strlen(password), salt, sizeof salt,
                        PASSWD_SCRAM_ITERATIONS, &k);
    char s64[store_b64_enc_len(16) + 1], st64[store_b64_enc_len(32) + 1],
        sv64[store_b64_enc_len(32) + 1], buf[200];
    store_b64_encode(k.salt, k.salt_len, s64);
    store_b64_encode(k.stored_key, 32, st64);
    store_b64_encode(k.server_key, 32, sv64);
    snprintf(buf, sizeof buf, "%u,%s,%s,%s", k.iterations, s64, st64, sv64);
    memset(&k, 0, sizeof k);
    return with_prefix("SCRAM-SHA-256", buf, out);
}

int passwd_hash(const char *scheme, const char *password, char **out)
{
    const char *prefix;
    if (!strcmp(scheme, "PLAIN") || !strcmp(scheme, "CLEAR"))
        return with_prefix(scheme, password, out);
    if (!strcmp(scheme, "SCRAM-SHA-256"))
        return hash_scram(password, out);
    if (!strcmp(scheme, "ARGON2ID")) {
#ifdef RINGMAIL_HAVE_SODIUM
        char h[crypto_pwhash_STRBYTES];
        pthread_once(&sodium_once, sodium_setup);
        /* libsodium's "interactive" cost: t=2, m=64 MiB, p=1. */
        if (crypto_pwhash_str_alg(h, password, strlen(password),
                                  crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                  crypto_pwhash_MEMLIMIT_INTERACTIVE,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0)
            return -ENOMEM;
        return with_prefix(scheme, h, out);
#else
        return -ENOTSUP;
#endif
    }
    if (!strcmp(scheme, "SHA512-CRYPT"))
        prefix = "$6$";
    else if (!strcmp(scheme, "SHA256-CRYPT"))
        prefix = "$5$";
    else if (!strcmp(scheme, "BLF-CRYPT"))
        prefix = "$2b$";
    else
        return -EINVAL;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt))
        return -errno ? -errno : -EINVAL;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
        return -ENOMEM;
    const char *h = crypt_r(password, salt, cd);
    int rc = !h || h[0] == '*' ? -EINVAL : with_prefix(scheme, h, out);
    free(cd);
    return rc;
}

uint64_t passwd_generation_nowait(passwd_db *db)
{
    struct stat st;
    if (pthread_mutex_trylock(&db->lock) != 0)
        return 0;
    uint64_t g = 0;
    if (db->loaded && stat(db->path, &st) == 0 && same_file(&st, &db->st))
        g = db->generation;
    pthread_mutex_unlock(&db->lock);
    return g;
}

int passwd_scram_everyone(passwd_db *db)
{
    struct stat st;
    if (pthread_mutex_trylock(&db->lock) != 0)
        return -EAGAIN;
    int rc = -EAGAIN;
    if (db->loaded && stat(db->path, &st) == 0 && same_file(&st, &db->st))
        rc = db->scram_everyone ? 1 : 0;
    pthread_mutex_unlock(&db->lock);
    return rc;
}

int passwd_scram_lookup(passwd_db *db, const char *user, passwd_scram *out)
{
    pthread_mutex_lock(&db->lock);
    int rc = refresh(db);
    char *secret = NULL;
    if (rc == 0) {
        struct pw_user key = {.name = (char *)user};
        struct pw_user *u = db->n ? bsearch(&key, db->users, db->n, sizeof key, cmp_user)
                                  : NULL;
        if (u && !(secret = strdup(u->secret)))
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&db->lock);
    if (rc < 0)
        return rc;
    rc = -EACCES;
    if (!secret)
        return rc;
    if (!strncmp(secret, "{SCRAM-SHA-256}", 15)) {
        if (passwd_scram_parse(secret + 15, out) == 0)
            rc = 0;
    } else if (!strncmp(secret, "{PLAIN}", 7) || !strncmp(secret, "{CLEAR}", 7)) {
        uint8_t salt[16];
        passwd_scram_salt(user, salt);
        rc = passwd_scram_derive(secret + 7, strlen(secret + 7), salt, sizeof salt,
                                 PASSWD_SCRAM_ITERATIONS, out);
    }
    memset(secret, 0, strlen(secret));
    free(secret);
    return rc;
}

int passwd_file_users(const char *path, char ***names, size_t *n)
{
    struct pw_user *v;
    size_t k;
    int rc = load_file(path, &v, &k);
    if (rc == -ENOENT) {
        v = NULL;
        k = 0;
        rc = 0;
    }
    if (rc < 0)
        return rc;
    char **out = calloc(k ? k : 1, sizeof *out);
    if (!out) {
        users_free(v, k);
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        out[i] = v[i].name;
        v[i].name = NULL;
    }
    users_free(v, k);
    *names = out;
    *n = k;
    return 0;
}

const char *passwd_user_name_problem(const char *name)
{
    const unsigned char *u = (const unsigned char *)name;
    size_t n = strlen(name);
    if (n == 0)
        return "it is empty";
    if (n > PASSWD_USER_MAX)
        return "it is longer than 255 bytes";
    if (name[0] == '#')
        return "a line starting with '#' is a comment in the passwd-file";
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return "it cannot name a mail directory";
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c == ':')
            return "':' separates the passwd-file's fields";
        if (c == '/')
            return "'/' cannot be in a mail directory's name";
        if (c < 0x20 || c == 0x7f)
            return "it contains a control character (such as TAB)";
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = store_utf8_decode(u + i, n - i, &cp);
        if (!len)
            return "it is not UTF-8";
        if (cp < 0xa0)
            return "it contains a control character";
        i += len;
    }
    return NULL;
}

int passwd_file_set(const char *path, const char *user, const char *entry,
                    bool replace)
{
    /* A name that is already in the file may still be deleted. */
    if (!*user || strpbrk(user, ":\n\r") || (entry && strpbrk(entry, "\n\r")) ||
        (entry && passwd_user_name_problem(user)))
        return -EINVAL;
    char *old = NULL;
    size_t oldlen = 0;
    FILE *f = fopen(path, "re");
    if (f) {
        char buf[65536];
        size_t r;
        FILE *m = open_memstream(&old, &oldlen);
        if (!m) {
            fclose(f);
            return -ENOMEM;
        }
        while ((r = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, r, m);
        fclose(f);
        fclose(m);
    } else if (errno != ENOENT) {
        return -errno;
    }
    char *nbuf = NULL;
    size_t nlen = 0;
    FILE *m = open_memstream(&nbuf, &nlen);
    if (!m) {
        free(old);
        return -ENOMEM;
    }
    bool found = false;
    size_t ul = strlen(user);
    for (char *line = old, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) : strlen(line);
        if (next)
            next++;
        if (len > ul && !strncmp(line, user, ul) && line[ul] == ':') {
            found = true;
            if (entry && replace)
                fprintf(m, "%s:%s\n", user, entry);
            continue;
        }
        fwrite(line, 1, len, m);
        fputc('\n', m);
    }
    int rc = 0;
    if (entry && found && !replace)
        rc = -EEXIST;
    else if (!found && (!entry || replace))
        rc = -ENOENT;
    else if (entry && !found)
        fprintf(m, "%s:%s\n", user, entry);
    fclose(m);
    free(old);
    if (rc == 0) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = -errno;
        } else {
            ssize_t w = write(fd, nbuf, nlen);
            if (w != (ssize_t)nlen || fsync(fd) < 0)
                rc = w < 0 ? -errno : -EIO;
            close(fd);
            if (rc == 0 && rename(tmp, path) < 0)
                rc = -errno;
            if (rc < 0)
                unlink(tmp);
        }
    }
    free(nbuf);
    return rc;
}

int passwd_lookup(passwd_db *db, const char *user, bool fold, char **name, char **extra)
{
    *name = NULL;
    if (extra)
        *extra = NULL;
    pthread_mutex_lock(&db->lock);
    int rc = refresh(db);
    if (rc == 0) {
        struct pw_user key = {.name = (char *)user}, *kp = &key;
        struct pw_user *u = db->n ? bsearch(&key, db->users, db->n, sizeof key, cmp_user) : NULL;
        if (!u && fold && db->n) {
            struct pw_user **f = bsearch(&kp, db->folded, db->n, sizeof kp, cmp_folded);
            u = f ? *f : NULL;
        }
        if (!u)
            rc = -ENOENT;
        else if (!(*name = strdup(u->name)) ||
                 (extra && u->extra && !(*extra = strdup(u->extra))))
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&db->lock);
    if (rc < 0) {
        free(*name);
        *name = NULL;
        if (extra) {
            free(*extra);
            *extra = NULL;
        }
    }
    return rc;
}

int passwd_file_entry(const char *path, const char *user, char **entry)
{
    *entry = NULL;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == EACCES ? -EIO : -errno;
    char *line = NULL;
    size_t cap = 0, ul = strlen(user);
    ssize_t len;
    int rc = -ENOENT;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if ((size_t)len > ul && !strncmp(line, user, ul) && line[ul] == ':') {
            rc = (*entry = strdup(line + ul + 1)) ? 0 : -ENOMEM;
            break;
        }
    }
    if (line)
        memset(line, 0, cap);
    free(line);
    fclose(f);
    return rc;
}
