/* Path bookkeeping of fs/store_ns.c is byte-exact: renames and recursive removals move or drop
 * exactly the rows at or below a directory, whatever its bytes (case, UTF-8, LIKE wildcards,
 * length), and leave every other row as it was. */
#include "check.h"
#include "store.h"

#include <stdint.h>
#include <unistd.h>

static store_handle *open_fresh(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    store_handle *st = NULL;
    char err[256];
    CHECK_MSG(store_open(path, 0, &st, err, sizeof err) == 0, "%s", err);
    return st;
}

static int64_t add(store_handle *st, const char *path)
{
    int64_t id = 0;
    CHECK_MSG(store_begin(st, path, 1, 7, &id) == 0, "store_begin %s", path);
    return id;
}

/* Every stored path and its model id, in store order (bytes), as "path=id\n" lines. */
typedef struct dump {
    char *text;
    size_t len, cap;
} dump;

static int dump_cb(void *ctx, const char *path, int64_t model_id, const char *status,
                   int64_t dir_mtime_ns)
{
    (void)status;
    dump *d = ctx;
    size_t need = strlen(path) + 64;
    if (d->len + need >= d->cap) {
        d->cap = (d->len + need) * 2;
        d->text = realloc(d->text, d->cap);
        if (!d->text)
            abort();
    }
    d->len += (size_t)snprintf(d->text + d->len, d->cap - d->len, "%s=%lld@%lld\n", path,
                               (long long)model_id, (long long)dir_mtime_ns);
    return 0;
}

static char *snapshot(store_handle *st)
{
    dump d = {0};
    CHECK(store_each_path(st, dump_cb, &d) == 0);
    return d.text ? d.text : strdup("");
}

typedef struct entry {
    const char *path;
    int64_t id;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->path, ((const entry *)b)->path);
}

/* The snapshot expected for entries (sorted here by bytes, as the store lists them). */
static char *expected(entry *e, size_t n)
{
    qsort(e, n, sizeof *e, entry_cmp);
    dump d = {0};
    for (size_t i = 0; i < n; i++)
        dump_cb(&d, e[i].path, e[i].id, "", 7);
    return d.text ? d.text : strdup("");
}

static void check_rows(store_handle *st, entry *e, size_t n, const char *what)
{
    char *got = snapshot(st), *want = expected(e, n);
    CHECK_MSG(strcmp(got, want) == 0, "%s:\n-- got\n%s-- want\n%s", what, got, want);
    free(got);
    free(want);
}

#define N(a) (sizeof(a) / sizeof(a)[0])

static void test_case(const char *dir)
{
    store_handle *st = open_fresh(dir, "case.db");
    if (!st)
        return;
    int64_t victim = add(st, "/team/llama"), victim2 = add(st, "/team/llama/sub");
    int64_t mine = add(st, "/TEAM/x"), other = add(st, "/Team/y"), t2 = add(st, "/TEAM2/z");
    /* The attacker renames their /TEAM: only /TEAM itself and below move. */
    CHECK(store_rename(st, "/TEAM", "/TEAM3") == 0);
    entry e1[] = {{"/team/llama", victim}, {"/team/llama/sub", victim2}, {"/TEAM3/x", mine},
                  {"/Team/y", other},      {"/TEAM2/z", t2}};
    check_rows(st, e1, N(e1), "rename /TEAM");
    /* Renaming onto a name that differs only in case replaces nothing else. */
    CHECK(store_rename(st, "/TEAM3", "/TEAm") == 0);
    entry e2[] = {{"/team/llama", victim}, {"/team/llama/sub", victim2}, {"/TEAm/x", mine},
                  {"/Team/y", other},      {"/TEAM2/z", t2}};
    check_rows(st, e2, N(e2), "rename to /TEAm");
    CHECK(store_remove_path(st, "/TEAm", true) == 0);
    CHECK(store_remove_path(st, "/TEAM2", true) == 0);
    CHECK(store_remove_path(st, "/TEAM", true) == 0); /* nothing stored there */
    entry e3[] = {{"/team/llama", victim}, {"/team/llama/sub", victim2}, {"/Team/y", other}};
    check_rows(st, e3, N(e3), "remove /TEAm and /TEAM2");
    store_model m;
    CHECK_INT(store_model_by_id(st, mine, &m), 1); /* its model went with its last path */
    CHECK_INT(store_model_by_id(st, victim, &m), 0);
    store_model_clear(&m);
    store_close(st);
}

static void test_utf8(const char *dir)
{
    store_handle *st = open_fresh(dir, "utf8.db");
    if (!st)
        return;
    int64_t a = add(st, "/models-\xc3\xbc/a"), b = add(st, "/models-\xc3\xbc/b/c");
    int64_t self = add(st, "/models-\xc3\xbc"), x = add(st, "/models-\xc3\xbcx/d");
    int64_t upper = add(st, "/models-\xc3\x9c/e"), plain = add(st, "/models-u/f");
    CHECK(store_rename(st, "/models-\xc3\xbc", "/m\xc3\xa9-\xe6\xa8\xa1\xe5\x9e\x8b") == 0);
    entry e1[] = {{"/m\xc3\xa9-\xe6\xa8\xa1\xe5\x9e\x8b/a", a},
                  {"/m\xc3\xa9-\xe6\xa8\xa1\xe5\x9e\x8b/b/c", b},
                  {"/m\xc3\xa9-\xe6\xa8\xa1\xe5\x9e\x8b", self},
                  {"/models-\xc3\xbcx/d", x},
                  {"/models-\xc3\x9c/e", upper},
                  {"/models-u/f", plain}};
    check_rows(st, e1, N(e1), "rename of a UTF-8 directory");
    /* And back to an ASCII name, shorter in bytes than in characters the other way round. */
    CHECK(store_rename(st, "/m\xc3\xa9-\xe6\xa8\xa1\xe5\x9e\x8b", "/ascii") == 0);
    entry e2[] = {{"/ascii/a", a},          {"/ascii/b/c", b},          {"/ascii", self},
                  {"/models-\xc3\xbcx/d", x}, {"/models-\xc3\x9c/e", upper}, {"/models-u/f", plain}};
    check_rows(st, e2, N(e2), "rename back to ASCII");
    /* Bytes that are not UTF-8 at all are still just bytes. */
    int64_t raw = add(st, "/raw\xff\xfe/g");
    CHECK(store_rename(st, "/raw\xff\xfe", "/raw\xc3") == 0);
    CHECK(store_remove_path(st, "/models-\xc3\x9c", true) == 0);
    entry e3[] = {{"/ascii/a", a},          {"/ascii/b/c", b}, {"/ascii", self},
                  {"/models-\xc3\xbcx/d", x}, {"/models-u/f", plain}, {"/raw\xc3/g", raw}};
    check_rows(st, e3, N(e3), "raw bytes");
    store_close(st);
}

static void test_wildcards(const char *dir)
{
    store_handle *st = open_fresh(dir, "wild.db");
    if (!st)
        return;
    int64_t pct = add(st, "/a%b/x"), und = add(st, "/a_b/x"), lit = add(st, "/aXb/x");
    int64_t bs = add(st, "/a\\b/x"), pct2 = add(st, "/a%bc/x"), star = add(st, "/a*b/x");
    int64_t q = add(st, "/a?b/x"), br = add(st, "/a[b]/x");
    CHECK(store_rename(st, "/a_b", "/moved_") == 0);
    CHECK(store_rename(st, "/a*b", "/star") == 0);
    CHECK(store_remove_path(st, "/a%b", true) == 0);
    CHECK(store_remove_path(st, "/a?b", true) == 0);
    entry e[] = {{"/moved_/x", und}, {"/aXb/x", lit}, {"/a\\b/x", bs}, {"/a%bc/x", pct2},
                 {"/star/x", star},  {"/a[b]/x", br}};
    check_rows(st, e, N(e), "wildcard names");
    store_model m;
    CHECK_INT(store_model_by_id(st, pct, &m), 1);
    CHECK_INT(store_model_by_id(st, q, &m), 1);
    store_close(st);
}

static void test_long(const char *dir)
{
    store_handle *st = open_fresh(dir, "long.db");
    if (!st)
        return;
    /* A 4 KiB directory path of 200-byte UTF-8 components, and a sibling that differs only in
     * its last byte. */
    char *deep = malloc(4200), *sib = malloc(4200), *to = malloc(4200);
    char *p1 = malloc(4300), *p2 = malloc(4300), *p3 = malloc(4300);
    size_t len = 0;
    while (len < 4000) {
        deep[len++] = '/';
        for (int i = 0; i < 99; i++) {
            deep[len++] = '\xc3';
            deep[len++] = '\xa4';
        }
        deep[len++] = 'd';
    }
    deep[len] = '\0';
    memcpy(sib, deep, len + 1);
    sib[len - 1] = 'e';
    snprintf(p1, 4300, "%s/unit", deep);
    snprintf(p2, 4300, "%s/unit", sib);
    int64_t a = add(st, p1), b = add(st, p2), c = add(st, deep);
    memcpy(to, deep, len + 1);
    to[1] = 'Z'; /* breaks the first UTF-8 sequence on purpose: still only bytes */
    CHECK(store_rename(st, deep, to) == 0);
    snprintf(p3, 4300, "%s/unit", to);
    entry e1[] = {{p3, a}, {p2, b}, {to, c}};
    check_rows(st, e1, N(e1), "4 KiB rename");
    CHECK(store_remove_path(st, to, true) == 0);
    entry e2[] = {{p2, b}};
    check_rows(st, e2, N(e2), "4 KiB remove");
    free(deep), free(sib), free(to), free(p1), free(p2), free(p3);
    store_close(st);
}

static void test_prefix(const char *dir)
{
    store_handle *st = open_fresh(dir, "prefix.db");
    if (!st)
        return;
    /* '.' sorts just before '/', '0' just after: the neighbours of the subtree range. */
    int64_t a = add(st, "/a"), ax = add(st, "/a/x"), axy = add(st, "/a/x/y");
    int64_t ab = add(st, "/ab"), abx = add(st, "/ab/x"), a0 = add(st, "/a0/x");
    int64_t adot = add(st, "/a.b"), aslash = add(st, "/a-/x"), root = add(st, "/z");
    CHECK(store_rename(st, "/a", "/c") == 0);
    entry e1[] = {{"/c", a},      {"/c/x", ax},    {"/c/x/y", axy},  {"/ab", ab}, {"/ab/x", abx},
                  {"/a0/x", a0}, {"/a.b", adot}, {"/a-/x", aslash}, {"/z", root}};
    check_rows(st, e1, N(e1), "rename /a");
    /* Non-recursive removal takes the path only. */
    CHECK(store_remove_path(st, "/c", false) == 0);
    entry e2[] = {{"/c/x", ax},   {"/c/x/y", axy}, {"/ab", ab},      {"/ab/x", abx},
                  {"/a0/x", a0}, {"/a.b", adot}, {"/a-/x", aslash}, {"/z", root}};
    check_rows(st, e2, N(e2), "remove /c alone");
    CHECK(store_remove_path(st, "/a", true) == 0); /* nothing left there */
    check_rows(st, e2, N(e2), "remove /a");
    CHECK(store_remove_path(st, "/c", true) == 0);
    entry e3[] = {{"/ab", ab},    {"/ab/x", abx}, {"/a0/x", a0},
                  {"/a.b", adot}, {"/a-/x", aslash}, {"/z", root}};
    check_rows(st, e3, N(e3), "remove /c");
    /* Rename over an existing subtree replaces it: /ab's rows go, their models too. */
    CHECK(store_rename(st, "/a0", "/ab") == 0);
    entry e4[] = {{"/ab/x", a0}, {"/a.b", adot}, {"/a-/x", aslash}, {"/z", root}};
    check_rows(st, e4, N(e4), "rename over /ab");
    store_model m;
    CHECK_INT(store_model_by_id(st, ab, &m), 1);
    CHECK_INT(store_model_by_id(st, abx, &m), 1);
    /* Into its own subtree: refused, nothing changes. */
    CHECK(store_rename(st, "/ab", "/ab/in") != 0);
    check_rows(st, e4, N(e4), "rename into itself");
    /* Onto an ancestor (the kernel refuses this for a non-empty one; the store stays exact). */
    int64_t deep = add(st, "/p/q/r");
    CHECK(store_rename(st, "/p/q", "/p") == 0);
    entry e5[] = {{"/ab/x", a0}, {"/a.b", adot}, {"/a-/x", aslash}, {"/z", root}, {"/p/r", deep}};
    check_rows(st, e5, N(e5), "rename onto an ancestor");
    /* A file-unit rename (a path without children) and a same-name rename. */
    int64_t g = add(st, "/ab/x.gguf");
    CHECK(store_rename(st, "/ab/x.gguf", "/ab/y.gguf") == 0);
    CHECK(store_rename(st, "/z", "/z") == 0);
    entry e6[] = {{"/ab/x", a0},  {"/a.b", adot},      {"/a-/x", aslash},
                  {"/z", root}, {"/p/r", deep}, {"/ab/y.gguf", g}};
    check_rows(st, e6, N(e6), "file rename");
    store_close(st);
}

int main(void)
{
    char dir[] = "/tmp/provfs-test-paths.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_case(dir);
    test_utf8(dir);
    test_wildcards(dir);
    test_long(dir);
    test_prefix(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return check_report("test_paths");
}
