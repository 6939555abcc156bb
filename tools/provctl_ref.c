/* provctl scan / provctl refdb — reference sets and scan, front end on analyzer/refdb.h.
 *
 *   provctl scan PATH [--refdb DIR] [--db FILE] [--top-k N] [--threshold S] [--json] [--threads N]
 *   provctl refdb import-mpk DIR [--out DIR]
 *   provctl refdb add MODEL --name N --family F [--out DIR]
 *   provctl refdb list [--refdb DIR] [--json]
 *
 * The reference directory is --refdb DIR, else $PROVFS_REFDB, else the one built in
 * (PROVFS_REFDB_DIR: the shipped sets in tools/refdb). Sets live in subdirectories of it:
 * import-mpk writes to <refdb>/cisco-mpk and add to <refdb>/local unless --out says otherwise.
 *
 * scan --db FILE also ranks the ready models of a provfs store (the same lineage database the
 * daemon writes, opened read-only): name = the model's first path, family = the root of its
 * lineage in the store. A stored model with the scanned model's own digest is the model itself
 * and is left out. The stored models scanned are the scanned model's best candidates from the
 * store's candidate index (analyzer/lsh.h, store_retrieve: models sharing a tensor hash or a
 * band, the best max(32, 4 x top-k)); every ready model with --no-prefilter, or when the model
 * has no index keys (no weights) or the store's index is of another version.
 */
#include "provctl_ref.h"

#include "lsh.h"
#include "provfs/analyzer.h"
#include "refdb.h"
#include "db.h"
#include "store.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef PROVFS_REFDB_DIR
#define PROVFS_REFDB_DIR "tools/refdb"
#endif

#define EXIT_ERR 2
#define MAX_FP_FILE (256u * 1024u * 1024u)

typedef struct args {
    const char *pos[4];
    int n_pos;
    const char *refdb, *db, *out, *name, *family, *top_k, *threshold, *threads;
    bool json, no_prefilter;
} args;

static int usage_scan(void)
{
    fprintf(stderr,
            "usage: provctl scan PATH [--refdb DIR] [--db FILE] [--top-k N] [--threshold S] "
            "[--json] [--threads N]\n");
    return EXIT_ERR;
}

static int usage_refdb(void)
{
    fprintf(stderr, "usage: provctl refdb import-mpk DIR [--out DIR]\n"
                    "       provctl refdb add MODEL --name N --family F [--out DIR]\n"
                    "       provctl refdb list [--refdb DIR] [--json]\n");
    return EXIT_ERR;
}

/* false (after a message) on an unknown flag, a flag without its value or too many positionals */
static bool parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    static const struct {
        const char *flag;
        size_t offset;
    } with_value[] = {
        {"--refdb", offsetof(args, refdb)},
        {"--db", offsetof(args, db)},
        {"--out", offsetof(args, out)},
        {"--name", offsetof(args, name)},
        {"--family", offsetof(args, family)},
        {"--top-k", offsetof(args, top_k)},
        {"--threshold", offsetof(args, threshold)},
        {"--threads", offsetof(args, threads)},
    };
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--json") == 0) {
            a->json = true;
            continue;
        }
        if (strcmp(s, "--no-prefilter") == 0) {
            a->no_prefilter = true;
            continue;
        }
        bool matched = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) {
            if (strcmp(s, with_value[k].flag) != 0)
                continue;
            if (i + 1 >= argc) {
                fprintf(stderr, "provctl: %s needs a value\n", s);
                return false;
            }
            *(const char **)((char *)a + with_value[k].offset) = argv[++i];
            matched = true;
            break;
        }
        if (matched)
            continue;
        if (s[0] == '-' && s[1] == '-') {
            fprintf(stderr, "provctl: unknown option '%s'\n", s);
            return false;
        }
        if (a->n_pos >= (int)(sizeof a->pos / sizeof *a->pos)) {
            fprintf(stderr, "provctl: too many arguments\n");
            return false;
        }
        a->pos[a->n_pos++] = s;
    }
    return true;
}

static const char *refdb_root(const char *flag)
{
    if (flag)
        return flag;
    const char *env = getenv("PROVFS_REFDB");
    return env && *env ? env : PROVFS_REFDB_DIR;
}

static int fail(const pa_error *err)
{
    fprintf(stderr, "provctl: %s\n", err->msg[0] ? err->msg : pa_status_name(err->status));
    return EXIT_ERR;
}

static bool starts_with_schema(const char *path, const char *schema)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, schema) != NULL;
}

static char *slurp(const char *path, size_t *len, pa_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pa_error_set(err, PA_E_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_FP_FILE) {
                pa_error_set(err, PA_E_LIMIT, "%s: larger than %u bytes", path, MAX_FP_FILE);
                break;
            }
            size_t nc = cap ? cap * 2 : 65536;
            char *p = realloc(buf, nc + 1);
            if (!p) {
                pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = p;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f))
                pa_error_set(err, PA_E_IO, "%s: read failed", path);
            else {
                fclose(f);
                buf[n] = '\0';
                *len = n;
                return buf;
            }
            break;
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

/* The model under scan: a model directory or .safetensors file, a saved fingerprint
 * (fingerprint --json) or a reference entry file. */
static pa_fingerprint *load_model(const char *path, int threads, pa_error *err)
{
    pa_fingerprint *fp = NULL;
    if (starts_with_schema(path, PA_REFENTRY_SCHEMA)) {
        pa_refentry e;
        if (pa_refentry_read(path, &e, err) != PA_OK)
            return NULL;
        fp = e.fp;
        e.fp = NULL;
        pa_refentry_clear(&e);
        return fp;
    }
    if (starts_with_schema(path, "provfs.fingerprint/")) {
        size_t len = 0;
        char *text = slurp(path, &len, err);
        if (!text)
            return NULL;
        pa_fp_from_json(text, len, path, &fp, err);
        free(text);
        return fp;
    }
    pa_fp_options opt = {0};
    opt.threads = threads;
    pa_fingerprint_path(path, &opt, &fp, err);
    return fp;
}

/* ------------------------------------------------------------------ stored models (--db) */

typedef struct stored {
    pa_scan_ref *refs;
    pa_fingerprint **fps;
    char **strings;
    size_t n, cap, n_strings, cap_strings;
    store_handle *st;
    const char *db_path;
    const char *skip_digest; /* the scanned model itself, when it is stored */
    pa_error *err;
} stored;

static bool keep_string(stored *s, char *str)
{
    if (!str)
        return false;
    if (s->n_strings == s->cap_strings) {
        size_t nc = s->cap_strings ? s->cap_strings * 2 : 64;
        char **p = realloc(s->strings, nc * sizeof *p);
        if (!p) {
            free(str);
            return false;
        }
        s->strings = p;
        s->cap_strings = nc;
    }
    s->strings[s->n_strings++] = str;
    return true;
}

static int add_stored(void *ctx, const char *path, int64_t model_id, const char *status,
                      int64_t dir_mtime_ns)
{
    (void)dir_mtime_ns;
    stored *s = ctx;
    if (strcmp(status, "ready") != 0)
        return 0;
    char *first = NULL;
    if (store_model_path(s->st, model_id, &first) != 0 || !first || strcmp(first, path) != 0) {
        free(first); /* a model reachable at several paths is scanned once, under its first */
        return 0;
    }
    store_model row;
    memset(&row, 0, sizeof row);
    bool self = store_model_by_id(s->st, model_id, &row) == 0 && s->skip_digest &&
                s->skip_digest[0] && strcmp(row.digest, s->skip_digest) == 0;
    store_model_clear(&row);
    if (self) {
        free(first); /* the store holds the scanned model itself: not a base of itself */
        return 0;
    }
    pa_fingerprint *fp = NULL;
    int rc = store_fingerprint_fp(s->st, model_id, &fp);
    if (rc != 0) {
        free(first);
        if (rc > 0)
            return 0; /* none, or unreadable (logged): not a base to offer */
        pa_error_set(s->err, PA_E_IO, "%s:%s: cannot read the stored fingerprint", s->db_path,
                     path);
        return 1;
    }
    /* family: the root of its lineage in the store (CONTRACT: user.provenance.family) */
    char *family = NULL;
    store_link *links = NULL;
    size_t n_links = 0;
    if (store_ancestors(s->st, model_id, &links, &n_links) == 0 && n_links &&
        links[n_links - 1].path)
        family = strdup(links[n_links - 1].path);
    store_links_free(links, n_links);
    if (!family)
        family = strdup(first);
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        pa_scan_ref *r = realloc(s->refs, nc * sizeof *r);
        pa_fingerprint **f = r ? realloc(s->fps, nc * sizeof *f) : NULL;
        if (r)
            s->refs = r;
        if (f)
            s->fps = f;
        if (!r || !f) {
            pa_fingerprint_free(fp);
            free(first);
            free(family);
            pa_error_set(s->err, PA_E_NOMEM, "%s: out of memory", s->db_path);
            return 1;
        }
        s->cap = nc;
    }
    if (!family || !keep_string(s, first) || !keep_string(s, family)) {
        pa_fingerprint_free(fp);
        pa_error_set(s->err, PA_E_NOMEM, "%s: out of memory", s->db_path);
        return 1;
    }
    s->fps[s->n] = fp;
    s->refs[s->n].name = first;
    s->refs[s->n].family = family;
    s->refs[s->n].fp = fp;
    s->n++;
    return 0;
}

static void stored_free(stored *s)
{
    for (size_t i = 0; i < s->n; i++)
        pa_fingerprint_free(s->fps[i]);
    for (size_t i = 0; i < s->n_strings; i++)
        free(s->strings[i]);
    free(s->fps);
    free(s->refs);
    free(s->strings);
}

typedef struct picked {
    int64_t *ids;
    size_t n, cap;
} picked;

static int pick(void *ctx, int64_t id, int64_t created_ns, const char *digest, const void *bin,
                size_t len)
{
    (void)created_ns, (void)digest, (void)bin, (void)len;
    picked *p = ctx;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        int64_t *g = realloc(p->ids, cap * sizeof *g);
        if (!g)
            return 1;
        p->ids = g;
        p->cap = cap;
    }
    p->ids[p->n++] = id;
    return 0;
}

/* The model's candidates from the store's index: 0 and *out filled, 1 when the index cannot
 * answer (no keys, another version), -1 on error. */
static int retrieve_stored(stored *s, const pa_fingerprint *model, size_t k, picked *out)
{
    pa_lsh_sig sig;
    int64_t bands = 0, hashes = 0, version = -1;
    if (pa_lsh_signature(model, &sig) != 0)
        return -1;
    int ret = 1;
    if (sig.n_bands + sig.n_hashes > 0 &&
        store_lsh_counts(s->st, &bands, &hashes, &version) == 0 && version == PA_LSH_VERSION) {
        size_t found = 0;
        ret = store_retrieve(s->st, NULL, &sig, 0, k, &found, pick, out) == 0 ? 0 : -1;
    }
    pa_lsh_sig_free(&sig);
    return ret;
}

static pa_status load_stored(const char *db_path, const pa_fingerprint *model, bool all,
                             size_t top_k, stored *s, pa_error *err)
{
    const char *skip_digest = pa_fp_digest(model);
    memset(s, 0, sizeof *s);
    s->db_path = db_path;
    s->skip_digest = skip_digest;
    s->err = err;
    char msg[256] = "";
    struct stat sb;
    if (!db_target_is_pg(db_path) && stat(db_path, &sb) != 0) /* a file must exist already */
        return pa_error_set(err, PA_E_IO, "%s: %s", db_path, strerror(errno));
    if (store_open(db_path, STORE_READONLY, &s->st, msg, sizeof msg) != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot open the store: %s", db_path,
                            msg[0] ? msg : "unknown error");
    picked p = {0};
    size_t k = top_k && 4 * top_k > 32 ? 4 * top_k : 32;
    int rc = all ? 1 : retrieve_stored(s, model, k, &p);
    if (rc == 1) {
        rc = store_each_path(s->st, add_stored, s);
    } else {
        for (size_t i = 0; rc == 0 && i < p.n; i++) {
            char *path = NULL;
            if (store_model_path(s->st, p.ids[i], &path) == 0 && path)
                rc = add_stored(s, path, p.ids[i], "ready", 0);
            free(path);
        }
    }
    free(p.ids);
    store_close(s->st);
    s->st = NULL;
    if (err->status != PA_OK)
        return err->status;
    if (rc != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot list the stored models", db_path);
    return PA_OK;
}

/* ------------------------------------------------------------------ scan */

static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > 1000000)
        return false;
    *out = (size_t)v;
    return true;
}

static bool parse_unit(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v > 0) || v > 1)
        return false;
    *out = v;
    return true;
}

static void print_text(const char *model, const pa_scan_match *m, size_t n,
                       const pa_scan_stats *stats)
{
    printf("model: %s (%zu candidates, %zu compared)\n", model, stats->candidates, stats->compared);
    if (!n) {
        printf("no candidates\n");
        return;
    }
    printf(" #  verdict    score   evidence                    name  [family]\n");
    for (size_t i = 0; i < n; i++) {
        char ev[64];
        const pa_scan_evidence *e = &m[i].evidence;
        snprintf(ev, sizeof ev, "%s%s%s%s%s", e->weights ? "weights" : "",
                 e->weights && (e->metadata || e->tokenizer) ? "+" : "",
                 e->metadata ? "metadata" : "", e->metadata && e->tokenizer ? "+" : "",
                 e->tokenizer ? "tokenizer" : "");
        if (!ev[0])
            snprintf(ev, sizeof ev, "-");
        printf("%2zu  %-9s  %.4f  %-26s  %s  [%s]%s\n", i + 1, pa_verdict_name(m[i].verdict),
               m[i].score, ev, m[i].name, m[i].family,
               !m[i].evidence.weights && m[i].verdict == PA_V_WEAK ? "  (family hint)" : "");
    }
}

int provctl_scan(int argc, char **argv)
{
    args a;
    if (!parse_args(argc, argv, &a) || a.n_pos != 1 || a.out || a.name || a.family)
        return usage_scan();
    pa_scan_options opt = {5, PA_SCAN_DEFAULT_THRESHOLD, a.no_prefilter};
    if (a.top_k && !parse_size(a.top_k, &opt.top_k)) {
        fprintf(stderr, "provctl: --top-k takes 0..1000000 (0 = all)\n");
        return EXIT_ERR;
    }
    if (a.threshold && !parse_unit(a.threshold, &opt.threshold)) {
        fprintf(stderr, "provctl: --threshold takes a score in (0, 1]\n");
        return EXIT_ERR;
    }
    size_t threads = 0;
    if (a.threads && (!parse_size(a.threads, &threads) || threads < 1 || threads > 16)) {
        fprintf(stderr, "provctl: --threads takes 1..16\n");
        return EXIT_ERR;
    }
    pa_error err = {0};
    pa_refdb *db = NULL;
    stored st;
    memset(&st, 0, sizeof st);
    pa_fingerprint *model = NULL;
    pa_scan_match *matches = NULL;
    size_t n = 0;
    int rc = EXIT_ERR;
    if (pa_refdb_load(refdb_root(a.refdb), &db, &err) != PA_OK)
        goto out;
    if (!(model = load_model(a.pos[0], (int)threads, &err)))
        goto out;
    if (a.db && load_stored(a.db, model, a.no_prefilter, opt.top_k, &st, &err) != PA_OK)
        goto out;
    pa_scan_stats stats;
    if (pa_scan(db, st.refs, st.n, model, &opt, &matches, &n, &stats, &err) != PA_OK)
        goto out;
    if (a.json) {
        char *j = pa_scan_to_json(a.pos[0], matches, n, &stats, true);
        if (!j) {
            pa_error_set(&err, PA_E_NOMEM, "%s: out of memory", a.pos[0]);
            goto out;
        }
        puts(j);
        free(j);
    } else {
        print_text(a.pos[0], matches, n, &stats);
    }
    rc = 0;
out:
    if (rc)
        fail(&err);
    pa_scan_free(matches, n);
    pa_fingerprint_free(model);
    stored_free(&st);
    pa_refdb_free(db);
    return rc;
}

/* ------------------------------------------------------------------ refdb */

static char *default_set(const char *set)
{
    const char *root = refdb_root(NULL);
    size_t len = strlen(root) + strlen(set) + 2;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", root, set);
    return p;
}

static int refdb_import(const args *a)
{
    if (a->n_pos != 2 || a->name || a->family || a->db)
        return usage_refdb();
    char *out = a->out ? strdup(a->out) : default_set("cisco-mpk");
    if (!out) {
        fprintf(stderr, "provctl: out of memory\n");
        return EXIT_ERR;
    }
    pa_error err = {0};
    size_t n = 0;
    int rc = 0;
    if (pa_refdb_import_mpk(a->pos[1], out, &n, &err) != PA_OK)
        rc = fail(&err);
    else
        printf("imported %zu reference entries from %s into %s\n", n, a->pos[1], out);
    free(out);
    return rc;
}

static int refdb_add(const args *a)
{
    if (a->n_pos != 2 || !a->name || !a->family || a->db)
        return usage_refdb();
    char *out = a->out ? strdup(a->out) : default_set("local");
    if (!out) {
        fprintf(stderr, "provctl: out of memory\n");
        return EXIT_ERR;
    }
    pa_error err = {0};
    int rc = 0;
    if (pa_refdb_add_model(out, a->pos[1], a->name, a->family, &err) != PA_OK)
        rc = fail(&err);
    else
        printf("added %s (family %s) to %s\n", a->name, a->family, out);
    free(out);
    return rc;
}

static int refdb_list(const args *a)
{
    if (a->n_pos != 1 || a->name || a->family || a->db || a->out)
        return usage_refdb();
    pa_error err = {0};
    pa_refdb *db = NULL;
    if (pa_refdb_load(refdb_root(a->refdb), &db, &err) != PA_OK)
        return fail(&err);
    size_t n = pa_refdb_count(db);
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = o ? cJSON_AddArrayToObject(o, "entries") : NULL;
        if (o) {
            cJSON_AddStringToObject(o, "schema", "provfs.refdb/1");
            cJSON_AddStringToObject(o, "refdb", refdb_root(a->refdb));
            cJSON_AddNumberToObject(o, "count", (double)n);
        }
        for (size_t i = 0; arr && i < n; i++) {
            const pa_refentry *e = pa_refdb_entry(db, i);
            cJSON *x = cJSON_CreateObject();
            if (!x)
                break;
            cJSON_AddStringToObject(x, "name", e->name);
            cJSON_AddStringToObject(x, "family", e->family);
            cJSON_AddStringToObject(x, "source", e->source);
            cJSON_AddBoolToObject(x, "weights", pa_fp_has_weights(e->fp));
            cJSON_AddItemToArray(arr, x);
        }
        char *text = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!text) {
            pa_refdb_free(db);
            fprintf(stderr, "provctl: out of memory\n");
            return EXIT_ERR;
        }
        puts(text);
        free(text);
    } else {
        for (size_t i = 0; i < n; i++) {
            const pa_refentry *e = pa_refdb_entry(db, i);
            printf("%-40s  %-30s  %-8s  %s\n", e->name, e->family,
                   pa_fp_has_weights(e->fp) ? "weights" : "metadata", e->source);
        }
        printf("%zu entries in %s\n", n, refdb_root(a->refdb));
    }
    pa_refdb_free(db);
    return 0;
}

int provctl_refdb(int argc, char **argv)
{
    args a;
    if (argc < 1 || !parse_args(argc, argv, &a) || a.n_pos < 1)
        return usage_refdb();
    if (strcmp(a.pos[0], "import-mpk") == 0)
        return refdb_import(&a);
    if (strcmp(a.pos[0], "add") == 0)
        return refdb_add(&a);
    if (strcmp(a.pos[0], "list") == 0)
        return refdb_list(&a);
    fprintf(stderr, "provctl: unknown refdb command '%s'\n", a.pos[0]);
    return usage_refdb();
}
