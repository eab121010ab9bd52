/* core/auth/pq_load.c — libpq opened at run time.  See pq_load.h. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "core/auth/pq_load.h"

pq_fns pq_fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_rc;
static const char *load_why;

static void load(void)
{
    /* The runtime package's name: libpq.so (the -dev symlink) is not on
     * a server that has only libpq5. */
    void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        load_rc = -ENOENT;
        load_why = "userdb = pgsql: cannot load libpq.so.5 (install libpq5)";
        return;
    }
    static const struct {
        const char *name;
        size_t off;
    } tab[] = {
#define F(n) { #n, offsetof(pq_fns, n) }
        F(PQclear), F(PQcmdTuples), F(PQconnectPoll), F(PQconnectStart),
        F(PQconninfoFree), F(PQconninfoParse), F(PQconsumeInput), F(PQerrorMessage),
        F(PQfinish), F(PQflush), F(PQfname), F(PQfreemem), F(PQgetResult),
        F(PQgetisnull), F(PQgetvalue), F(PQisBusy), F(PQnfields), F(PQntuples),
        F(PQresultErrorMessage), F(PQresultStatus), F(PQsendQueryParams), F(PQsocket),
        F(PQstatus),
#undef F
    };
    _Static_assert(sizeof tab / sizeof tab[0] * sizeof(void (*)(void)) == sizeof(pq_fns),
                   "every libpq function in pq_fns is looked up");
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        void *f = dlsym(h, tab[i].name);
        if (!f) {
            load_rc = -ENOENT;
            load_why = "userdb = pgsql: libpq.so.5 lacks a function ringmaild needs";
            return;     /* h stays open: the process ends soon */
        }
        *(void **)((char *)&pq_fn + tab[i].off) = f;
    }
    load_rc = 0;    /* h stays open for the process's life */
}

int pq_load(const char **why)
{
    pthread_once(&once, load);
    if (load_rc < 0 && why)
        *why = load_why;
    return load_rc;
}
