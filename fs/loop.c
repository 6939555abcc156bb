/* The daemon's request loop (fs/README.md, "Request loop").
 *
 * One worker at a time, the reader, takes requests from the device and serves them itself.
 * After each reply it checks the device for the next request without sleeping, for up to
 * spin_ns after the last request began or ended, and only then sleeps (in poll(): the device is
 * non-blocking here, so no read ever waits). A program that makes one file-system call after
 * another (create, stat, unlink of many files) finds its next request taken at once, where a
 * sleeping worker would first be woken, and on a virtual machine its idle CPU with it. That
 * costs one CPU at most, and only within spin_ns of a request.
 *
 * Requests are still served side by side: while the reader serves one request, a watchdog
 * checks every LOOP_TICK_NS; once that request has taken LOOP_TICK_NS, or LOOP_QUEUED_NS with
 * others queued behind it, the reader role passes to another worker (one that waits for it, or
 * a new one up to max_threads). The old reader, once it has replied, serves queued requests too
 * while there are any, and then waits for its turn. A request that waits for another one
 * therefore holds up the others for about LOOP_TICK_NS at most, and a queue that grows gets up
 * to max_threads workers as in libfuse's loop. The watchdog sleeps while the reader sleeps.
 * Nothing here wakes a second thread for a request served within LOOP_QUEUED_NS. */
#include "loop.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define LOOP_TICK_NS 1000000  /* 1 ms */
#define LOOP_QUEUED_NS 200000 /* with requests queued behind it */

typedef struct loop loop;

typedef struct worker {
    loop *L;
    pthread_t thread;
    struct fuse_buf buf;
    _Atomic int64_t busy_since; /* when the request it serves arrived; 0: none */
    struct worker *next;
} worker;

struct loop {
    struct fuse_session *se;
    int fd;
    int64_t spin_ns;
    unsigned max_threads;
    pthread_mutex_t lock;
    pthread_cond_t turn;       /* workers waiting to become the reader */
    pthread_cond_t watch;      /* the watchdog, while the reader sleeps */
    worker *workers;           /* under lock: every worker started, joined at the end */
    unsigned started;          /* under lock */
    worker *reader;            /* under lock: the worker that reads the next request, or NULL */
    unsigned waiting;          /* under lock: workers waiting to become the reader */
    bool stopping;             /* under lock */
    bool watchdog_idle;        /* under lock: the watchdog waits on watch */
    atomic_bool reader_asleep; /* the reader sleeps (or is about to) until a request comes */
    _Atomic int64_t last_ns;   /* when the last request began or ended */
    atomic_int error;          /* the first read error (negative errno), 0 */
    sem_t finished;            /* a worker saw the session end */
};

static void *work(void *arg);

/* Starts a thread with every signal blocked: signals go to the thread in loop_run. */
static bool start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err == 0;
}

/* One more worker, up to max_threads. Called with L->lock held. */
static bool start_worker(loop *L)
{
    if (L->stopping || L->started >= L->max_threads)
        return false;
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return false;
    w->L = L;
    if (!start_thread(&w->thread, work, w)) {
        free(w);
        return false;
    }
    w->next = L->workers;
    L->workers = w;
    L->started++;
    return true;
}

/* Is a request queued (or the device gone, for the read to report)? Never waits: a timeout of
 * 0 does not join the device's wait queue. */
static bool queued(loop *L)
{
    struct pollfd p = {.fd = L->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

/* Checks for a request without sleeping while the last one is recent. true: one is queued;
 * false: the time is up. */
static bool watch(loop *L)
{
    for (;;) {
        if (queued(L))
            return true;
        if (mono_ns() - atomic_load(&L->last_ns) >= L->spin_ns)
            return false;
        sched_yield(); /* a runnable thread on this CPU goes first */
    }
}

/* The session ended (unmounted, a signal, or a handler ended it): loop_run stops the others. */
static void ended(loop *L, int res)
{
    int none = 0;
    if (res < 0)
        atomic_compare_exchange_strong(&L->error, &none, res);
    fuse_session_exit(L->se);
    sem_post(&L->finished);
}

/* Reads one request and serves it. 1: served; 0: none was there (another worker took it);
 * -1: the session ended. */
static int serve(loop *L, worker *w)
{
    int res = fuse_session_receive_buf(L->se, &w->buf);
    if (res == -EAGAIN || res == -EINTR)
        return 0;
    if (res <= 0 || fuse_session_exited(L->se)) {
        ended(L, res);
        return -1;
    }
    int64_t now = mono_ns();
    atomic_store(&L->last_ns, now);
    atomic_store(&w->busy_since, now);
    fuse_session_process_buf(L->se, &w->buf);
    atomic_store(&w->busy_since, 0);
    atomic_store(&L->last_ns, mono_ns());
    if (fuse_session_exited(L->se)) {
        ended(L, 0);
        return -1;
    }
    return 1;
}

static void *work(void *arg)
{
    /* cancelled (at the end) only while it waits on the device, as libfuse's workers: never in
     * a request, and never in the wait for the lock or its turn */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    worker *w = arg;
    loop *L = w->L;
    for (;;) {
        pthread_mutex_lock(&L->lock);
        if (L->reader && L->reader != w && !L->stopping) {
            /* replaced as the reader while it served: it serves what is queued meanwhile */
            pthread_mutex_unlock(&L->lock);
            if (queued(L)) {
                if (serve(L, w) < 0)
                    return NULL;
                continue;
            }
            pthread_mutex_lock(&L->lock);
        }
        while (L->reader && L->reader != w && !L->stopping) {
            L->waiting++;
            pthread_cond_wait(&L->turn, &L->lock);
            L->waiting--;
        }
        bool stop = L->stopping;
        if (!stop)
            L->reader = w;
        pthread_mutex_unlock(&L->lock);
        if (stop)
            return NULL;

        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        bool asleep = !watch(L);
        if (asleep) {
            atomic_store(&L->reader_asleep, true);
            struct pollfd p = {.fd = L->fd, .events = POLLIN};
            poll(&p, 1, -1);
        }
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        if (asleep) {
            /* a new run of requests: the watchdog watches it (cleared before the request is
             * served, so before this worker can be replaced as the reader) */
            atomic_store(&L->reader_asleep, false);
            pthread_mutex_lock(&L->lock);
            if (L->watchdog_idle)
                pthread_cond_signal(&L->watch);
            pthread_mutex_unlock(&L->lock);
        }
        if (serve(L, w) < 0)
            return NULL;
    }
}

/* Passes the reader role on when the reader has served one request for LOOP_TICK_NS, or for
 * LOOP_QUEUED_NS with others queued. */
static void *watchdog(void *arg)
{
    loop *L = arg;
    pthread_mutex_lock(&L->lock);
    while (!L->stopping) {
        if (atomic_load(&L->reader_asleep)) {
            L->watchdog_idle = true;
            pthread_cond_wait(&L->watch, &L->lock);
            L->watchdog_idle = false;
            continue;
        }
        worker *r = L->reader;
        int64_t since = r ? atomic_load(&r->busy_since) : 0;
        int64_t busy = since ? mono_ns() - since : 0;
        if (busy >= LOOP_TICK_NS || (busy >= LOOP_QUEUED_NS && queued(L))) {
            L->reader = NULL;
            if (L->waiting)
                pthread_cond_signal(&L->turn);
            else
                start_worker(L); /* at most max_threads; until one takes the role, a worker
                                    that finishes its request does */
        }
        pthread_mutex_unlock(&L->lock);
        struct timespec t = {0, LOOP_TICK_NS};
        nanosleep(&t, NULL);
        pthread_mutex_lock(&L->lock);
    }
    pthread_mutex_unlock(&L->lock);
    return NULL;
}

int loop_run(struct fuse_session *se, unsigned spin_us, unsigned max_threads)
{
    loop L = {.se = se,
              .fd = fuse_session_fd(se),
              .spin_ns = (int64_t)spin_us * 1000,
              .max_threads = max_threads ? max_threads : 1};
    int flags = fcntl(L.fd, F_GETFL);
    if (flags < 0 || fcntl(L.fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        sem_init(&L.finished, 0, 0) != 0)
        return -1;
    pthread_mutex_init(&L.lock, NULL);
    pthread_cond_init(&L.turn, NULL);
    pthread_cond_init(&L.watch, NULL);
    pthread_t dog;
    pthread_mutex_lock(&L.lock);
    bool dog_started = start_thread(&dog, watchdog, &L);
    bool started = dog_started && start_worker(&L);
    pthread_mutex_unlock(&L.lock);
    if (started) {
        /* a signal (fuse_set_signal_handlers) interrupts the wait and exits the session */
        while (!fuse_session_exited(se))
            sem_wait(&L.finished);
    }
    pthread_mutex_lock(&L.lock);
    L.stopping = true;
    pthread_cond_broadcast(&L.turn);
    pthread_cond_broadcast(&L.watch);
    for (worker *w = L.workers; w; w = w->next)
        pthread_cancel(w->thread); /* takes effect only in a wait on the device */
    pthread_mutex_unlock(&L.lock);
    if (dog_started)
        pthread_join(dog, NULL);
    while (L.workers) {
        worker *w = L.workers;
        L.workers = w->next;
        pthread_join(w->thread, NULL);
        free(w->buf.mem);
        free(w);
    }
    pthread_cond_destroy(&L.watch);
    pthread_cond_destroy(&L.turn);
    pthread_mutex_destroy(&L.lock);
    sem_destroy(&L.finished);
    fcntl(L.fd, F_SETFL, flags);
    fuse_session_reset(se);
    return started && atomic_load(&L.error) == 0 ? 0 : -1;
}
