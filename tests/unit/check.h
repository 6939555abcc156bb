/* Minimal assertion helpers for the in-process unit tests. Each test binary returns non-zero when
 * any check failed, so meson reports it. */
#ifndef PROVFS_CHECK_H
#define PROVFS_CHECK_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        check_count++;                                                                           \
        if (!(cond)) {                                                                           \
            check_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);            \
        }                                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                     \
    do {                                                                                         \
        check_count++;                                                                           \
        if (!(cond)) {                                                                           \
            check_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

#define CHECK_STR(a, b)                                                                          \
    CHECK_MSG(strcmp((a), (b)) == 0, "'%s' != '%s'", (a), (b))
#define CHECK_INT(a, b)                                                                          \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_NEAR(a, b, eps)                                                                    \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (eps), "%.6f != %.6f (eps %g)", (double)(a),     \
              (double)(b), (double)(eps))

static inline int check_report(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : (check_count ? 0 : 1);
}

/* Runs `PROG ARGS` (ARGS printf-style) in directory DIR, its output discarded: how the tests make
 * their models with tools/mkmodel. A failure ends the test binary NAME at once, with its report:
 * nothing after it could pass. */
__attribute__((format(printf, 4, 5))) static inline void check_run(const char *dir,
                                                                   const char *prog,
                                                                   const char *name,
                                                                   const char *fmt, ...)
{
    char args[1024], cmd[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s >/dev/null", dir, prog, args);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "command failed: %s", cmd);
    if (rc)
        exit(check_report(name));
}
#endif
