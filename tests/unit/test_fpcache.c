/* The fingerprint cache (fs/fpcache.c): least recently used out, within a byte budget; and the
 * lineage the daemon records does not depend on the budget (models analysed in process with no
 * cache at all, a cache of about one fingerprint, and the default). */
#include "analyze.h"
#include "check.h"
#include "fpcache.h"
#include "provfs/analyzer.h"

#include <unistd.h>

static char tmp[256];
static char bdir[300]; /* tmp/b: the models, the backing directory */
static const char *mkmodel;

#define run(...) check_run(bdir, mkmodel, "fpcache", __VA_ARGS__)

static pa_fingerprint *fingerprint(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/b/%s", tmp, name);
    pa_fingerprint *fp = NULL;
    pa_fp_options opt = {0};
    pa_error err = {0};
    CHECK_MSG(pa_fingerprint_path(path, &opt, &fp, &err) == PA_OK, "%s", err.msg);
    return fp;
}

static void test_lru(void)
{
    fpcache *c = fpcache_create(250);
    CHECK(c != NULL);
    if (!c)
        return;
    const char *names[] = {"base", "ft1", "ft2", "other"};
    const pa_fingerprint *got[4];
    for (int i = 0; i < 4; i++) {
        got[i] = fpcache_put(c, i + 1, names[i], fingerprint(names[i]), 100);
        CHECK(got[i] != NULL);
        /* nothing goes before a trim: every pointer handed out stays valid */
        CHECK_INT(fpcache_count(c), i + 1);
        CHECK(fpcache_get(c, 1, "base") == got[0]);
    }
    CHECK_INT(fpcache_bytes(c), 400);
    fpcache_trim(c);
    /* within 250 bytes: two of 100 remain, the most recently used (1 was touched last, then 4) */
    CHECK_INT(fpcache_bytes(c), 200);
    CHECK_INT(fpcache_count(c), 2);
    CHECK_INT(fpcache_evictions(c), 2);
    CHECK(fpcache_get(c, 1, "base") == got[0]);
    CHECK(fpcache_get(c, 4, "other") == got[3]);
    CHECK(fpcache_get(c, 2, "ft1") == NULL);
    CHECK(fpcache_get(c, 3, "ft2") == NULL);
    /* another digest under an id is a miss; a new put replaces the old one at the next trim */
    CHECK(fpcache_get(c, 1, "changed") == NULL);
    const pa_fingerprint *again = fpcache_put(c, 1, "changed", fingerprint("ft1"), 100);
    CHECK(fpcache_get(c, 1, "changed") == again);
    CHECK(fpcache_get(c, 1, "base") == NULL);
    CHECK_INT(fpcache_bytes(c), 300);
    fpcache_trim(c);
    CHECK_INT(fpcache_count(c), 2);
    CHECK_INT(fpcache_bytes(c), 200);
    CHECK(fpcache_get(c, 1, "changed") == again && fpcache_get(c, 4, "other") == got[3]);
    fpcache_forget(c, 4);
    CHECK_INT(fpcache_count(c), 1);
    CHECK(fpcache_get(c, 4, "other") == NULL);
    /* an entry larger than the whole budget is usable until the trim */
    const pa_fingerprint *big = fpcache_put(c, 9, "big", fingerprint("base"), 1000);
    CHECK(big && fpcache_get(c, 9, "big") == big);
    fpcache_trim(c);
    CHECK(fpcache_bytes(c) <= 250);
    CHECK(fpcache_get(c, 9, "big") == NULL);
    /* many entries: the table grows, every one is found, the budget holds after a trim */
    pa_fingerprint *small = fingerprint("other");
    char *json = small ? pa_fp_to_json(small, false) : NULL;
    pa_fingerprint_free(small);
    fpcache *m = json ? fpcache_create(2000) : NULL;
    for (int i = 0; i < 600 && m; i++) {
        char d[16];
        snprintf(d, sizeof d, "d%d", i);
        pa_fingerprint *fp = NULL;
        pa_error err = {0};
        CHECK(pa_fp_from_json(json, strlen(json), d, &fp, &err) == PA_OK);
        fpcache_put(m, 1000 + i, d, fp, 10);
        if (i % 200 == 199)
            fpcache_trim(m);
    }
    free(json);
    CHECK(m && fpcache_count(m) == 200 && fpcache_bytes(m) == 2000);
    CHECK(m && fpcache_get(m, 1599, "d599") != NULL && fpcache_get(m, 1000, "d0") == NULL);
    fpcache_destroy(m);
    fpcache_destroy(c);
}

/* Stores the models under tmp/b in the order given, one at a time, with a cache of budget bytes,
 * and writes "path<-parent " for each into out. */
static void lineage_with(size_t budget, const char *const *paths, size_t n, char *out,
                         size_t outlen, size_t *evictions)
{
    char backing[300], db[320];
    snprintf(backing, sizeof backing, "%s/b", tmp);
    snprintf(db, sizeof db, "%s/lineage-%zu.db", tmp, budget);
    store_handle *st = NULL;
    char err[256];
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    analyze_ctx *an = st ? analyze_create(backing, st, 1) : NULL;
    CHECK(an != NULL && analyze_set_fp_cache(an, budget) == 0);
    queue *q = an ? queue_create(1, 0, analyze_job, an) : NULL;
    CHECK(q != NULL);
    out[0] = '\0';
    if (!q)
        return;
    analyze_set_queue(an, q);
    for (size_t i = 0; i < n; i++) {
        queue_mark(q, paths[i], 0, 0);
        CHECK(queue_wait_idle(q, 60000));
        size_t bytes, count;
        analyze_fp_cache_stats(an, &bytes, &count, evictions);
        CHECK_MSG(bytes <= budget, "cache %zu bytes over its budget %zu", bytes, budget);
    }
    for (size_t i = 0; i < n; i++) {
        store_model m;
        store_link l;
        const char *parent = "-";
        bool have = store_model_by_path(st, paths[i], &m) == 0;
        CHECK_MSG(have && strcmp(m.status, "ready") == 0, "%s not ready", paths[i]);
        bool linked = have && store_parent(st, m.id, &l) == 0;
        if (linked && l.path)
            parent = l.path;
        size_t o = strlen(out);
        snprintf(out + o, outlen - o, "%s<-%s ", paths[i], parent);
        if (linked)
            store_link_clear(&l);
        if (have)
            store_model_clear(&m);
    }
    queue_destroy(q);
    analyze_destroy(an);
    store_close(st);
}

static void test_budgets(void)
{
    const char *paths[] = {"/base", "/ft1", "/ft2", "/other", "/ft1-q8", "/ft3", "/ft1-ft"};
    size_t n = sizeof paths / sizeof *paths;
    char full[2048], none[2048], one[2048];
    size_t ev_full = 0, ev_none = 0, ev_one = 0;
    lineage_with((size_t)ANALYZE_FP_CACHE_MB << 20, paths, n, full, sizeof full, &ev_full);
    lineage_with(0, paths, n, none, sizeof none, &ev_none);
    /* about one fingerprint: the family step's pairs keep evicting each other */
    pa_fingerprint *fp = fingerprint("base");
    size_t one_fp = fp ? fpcache_size_of(fp) + 1 : 1;
    pa_fingerprint_free(fp);
    lineage_with(one_fp, paths, n, one, sizeof one, &ev_one);
    CHECK_STR(full, "/base<-- /ft1<-/base /ft2<-/base /other<-- /ft1-q8<-/ft1 /ft3<-/base "
                    "/ft1-ft<-/ft1 ");
    CHECK_STR(none, full);
    CHECK_STR(one, full);
    CHECK_INT(ev_full, 0);
    CHECK(ev_none > 0 && ev_one > 0);
}

int main(void)
{
    mkmodel = getenv("MKMODEL");
    if (!mkmodel)
        return 1;
    snprintf(tmp, sizeof tmp, "/tmp/provfs-fpcache-XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    snprintf(bdir, sizeof bdir, "%s/b", tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir %s/b", tmp);
    if (system(cmd) != 0)
        return 1;
    const char *arch = "--hidden 64 --layers 2 --heads 4 --inter 128 --vocab 512";
    run("create base --seed 1 %s", arch);
    run("create other --seed 9 %s", arch);
    run("derive base ft1 --kind finetune --seed 2");
    run("derive base ft2 --kind finetune --seed 3");
    run("derive base ft3 --kind finetune --seed 4");
    run("derive ft1 ft1-q8 --kind quant-int8 --seed 5");
    run("derive ft1 ft1-ft --kind finetune --seed 6");
    test_lru();
    test_budgets();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return check_report("fpcache");
}
