/* Hash while writing (fs/writehash.c) without a mount: in-order writes give the file's SHA-256;
 * an overwrite or a gap gives none; a writer faster than WRITEHASH_MAX_RATE over a window (a
 * local copy) is given up, one slower (a download) is hashed to the end. */
#include "check.h"
#include "sha.h"
#include "writehash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK (1u << 20)

static void fill(uint8_t *buf, unsigned chunk)
{
    for (size_t i = 0; i < CHUNK; i++)
        buf[i] = (uint8_t)(i * 31 + chunk * 7 + (i >> 12));
}

/* n chunks written in order (sleep_us between them), through wh and, with same, through a plain
 * SHA-256 (*same: wh finished with that digest): true when wh finished with a digest. Without
 * same, the chunks differ in their first byte only, so the writer goes as fast as wh hashes. */
static bool write_chunks(unsigned n, long sleep_us, bool *same)
{
    uint8_t *buf = malloc(CHUNK);
    pa_sha_ctx *ref = pa_sha_new();
    writehash *wh = writehash_new();
    if (!buf || !ref || !wh) {
        CHECK(!"out of memory");
        exit(check_report("writehash"));
    }
    fill(buf, 0);
    for (unsigned c = 0; c < n; c++) {
        if (same) {
            fill(buf, c);
            pa_sha_update(ref, buf, CHUNK);
        } else {
            buf[0] = (uint8_t)c;
        }
        writehash_hold(wh);
        writehash_update(wh, (uint64_t)c * CHUNK, buf, CHUNK);
        if (sleep_us > 0)
            nanosleep(&(struct timespec){.tv_nsec = sleep_us * 1000}, NULL);
    }
    uint8_t digest[32];
    char want[65], got[65] = "";
    pa_sha_final(ref, digest);
    pa_hex(digest, 32, want);
    bool ok = writehash_finish(wh, (uint64_t)n * CHUNK, got);
    if (same)
        *same = ok && strcmp(got, want) == 0;
    free(buf);
    return ok;
}

static void test_in_order(void)
{
    bool same = false;
    CHECK(write_chunks(8, 0, &same));
    CHECK(same);
}

static void test_out_of_order(void)
{
    uint8_t buf[4096];
    memset(buf, 7, sizeof buf);
    /* an overwrite of bytes already hashed */
    writehash *wh = writehash_new();
    writehash_hold(wh);
    writehash_update(wh, 0, buf, sizeof buf);
    writehash_hold(wh);
    writehash_update(wh, 0, buf, sizeof buf);
    char hex[65];
    CHECK(!writehash_finish(wh, sizeof buf, hex));
    /* a gap that does not close (the update waits for its predecessor, then gives up) */
    wh = writehash_new();
    writehash_hold(wh);
    writehash_update(wh, sizeof buf, buf, sizeof buf);
    CHECK(!writehash_finish(wh, 2 * sizeof buf, hex));
    /* a size other than what was hashed */
    wh = writehash_new();
    writehash_hold(wh);
    writehash_update(wh, 0, buf, sizeof buf);
    CHECK(!writehash_finish(wh, 2 * sizeof buf, hex));
    /* invalidated (truncate, fallocate, copy_file_range) */
    wh = writehash_new();
    writehash_hold(wh);
    writehash_update(wh, 0, buf, sizeof buf);
    writehash_invalidate(wh);
    CHECK(!writehash_finish(wh, sizeof buf, hex));
}

static void test_rate(void)
{
    /* 96 MiB as fast as this thread hashes them (over a GB/s, several times the limit): a local
     * copy, given up */
    CHECK(!write_chunks(96, 0, NULL));
    /* 96 MiB at under 100 MB/s (10 ms a MiB; a slower machine only makes it slower): a download,
     * hashed to the end */
    bool same = false;
    CHECK(write_chunks(96, 10000, &same));
    CHECK(same);
}

int main(void)
{
    test_in_order();
    test_out_of_order();
    test_rate();
    return check_report("writehash");
}
