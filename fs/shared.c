/* shared.h */
#include "shared.h"
#include "clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct shared {
    store_handle *st;
    queue *q;
    int64_t lease_ns;
    char owner[160];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

/* shared.h. A row that is not one is left alone: the database is trusted, but what it names
 * is opened beneath BACKING all the same. */
bool shared_plain_path(const char *path)
{
    if (!path || path[0] != '/' || strcmp(path, "/.provfs") == 0 ||
        strncmp(path, "/.provfs/", 9) == 0)
        return false;
    for (const char *c = path + 1; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        c += n + (e != NULL);
        if (e && !*c)
            return false; /* a trailing slash */
    }
    return true;
}

static int queue_it(void *ctx, const char *path)
{
    shared *s = ctx;
    if (!shared_plain_path(path))
        return 0;
    /* not queue_note's way: that would record the unit in pending again */
    if (queue_get_state(s->q, path) == QUEUE_NONE)
        queue_mark(s->q, path, 0, 0);
    return 0;
}

static void *shared_main(void *arg)
{
    shared *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        int64_t now = real_ns();
        store_pending_renew(s->st, s->owner, now + s->lease_ns);
        store_pending_due(s->st, now, queue_it, s);
        pthread_mutex_lock(&s->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

shared *shared_start(store_handle *st, queue *q, unsigned lease_ms)
{
    if (!st || !q || !store_shared(st))
        return NULL;
    shared *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->st = st;
    s->q = q;
    s->lease_ns = (int64_t)(lease_ms ? lease_ms : SHARED_LEASE_MS_DEFAULT) * 1000000;
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    uint32_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
        nonce = (uint32_t)real_ns();
    snprintf(s->owner, sizeof s->owner, "%s:%ld:%08x", host, (long)getpid(), nonce);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, shared_main, s) != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }
    return s;
}

void shared_stop(shared *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *shared_owner(const shared *s) { return s->owner; }
int64_t shared_lease_ns(const shared *s) { return s->lease_ns; }
