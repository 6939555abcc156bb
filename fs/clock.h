/* The daemon's clocks: monotonic for intervals and deadlines, real time for what is stored or
 * shared with other hosts. */
#ifndef PROVFS_CLOCK_H
#define PROVFS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static inline int64_t mono_ms(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

static inline int64_t real_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

#endif
