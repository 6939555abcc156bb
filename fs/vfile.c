/* `.provenance` JSON rendering. */
#include "vfile.h"

#include "provfs/analyzer.h"

#include "policy.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void add_str_or_null(cJSON *o, const char *key, const char *value)
{
    if (value && *value)
        cJSON_AddStringToObject(o, key, value);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_hex_id(cJSON *o, const char *key, int64_t id)
{
    char hex[24];
    snprintf(hex, sizeof hex, "%" PRIx64, (uint64_t)id);
    cJSON_AddStringToObject(o, key, hex);
}

static void add_time(cJSON *o, const char *key, int64_t unix_seconds)
{
    if (unix_seconds <= 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    char text[32];
    gmtime_r(&t, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, key, text);
}

static cJSON *link_json(const store_link *l, bool with_signals)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_str_or_null(o, "path", l->path);
    add_hex_id(o, "id", l->id);
    cJSON_AddNumberToObject(o, "score", l->score);
    cJSON_AddStringToObject(o, "verdict", l->verdict);
    /* how the link was made: compared weights, or a PEFT adapter's checked declaration */
    cJSON_AddStringToObject(o, "kind", strcmp(l->verdict, "adapter") == 0 ? "adapter" : "weights");
    if (with_signals) {
        cJSON *cmp = l->signals ? cJSON_Parse(l->signals) : NULL;
        cJSON *sig = cmp ? cJSON_DetachItemFromObjectCaseSensitive(cmp, "signals") : NULL;
        cJSON_AddItemToObject(o, "signals", sig ? sig : cJSON_CreateNull());
        cJSON *reason = cmp ? cJSON_GetObjectItemCaseSensitive(cmp, "reason") : NULL;
        if (cJSON_IsString(reason))
            cJSON_AddStringToObject(o, "reason", reason->valuestring);
        cJSON_Delete(cmp);
    }
    return o;
}

/* Copies member key of the fingerprint (or null) into o under name. */
static void add_fp_member(cJSON *o, const char *name, const cJSON *fp, const char *key)
{
    const cJSON *item = fp ? cJSON_GetObjectItemCaseSensitive(fp, key) : NULL;
    cJSON *copy = item ? cJSON_Duplicate(item, true) : NULL;
    cJSON_AddItemToObject(o, name, copy ? copy : cJSON_CreateNull());
}

/* Summary of the fingerprint's weights section: counts and dtypes, not the sketches. */
static void add_weights(cJSON *o, const cJSON *fp)
{
    const cJSON *w = fp ? cJSON_GetObjectItemCaseSensitive(fp, "weights") : NULL;
    if (!cJSON_IsObject(w)) {
        cJSON_AddNullToObject(o, "weights");
        return;
    }
    cJSON *out = cJSON_AddObjectToObject(o, "weights");
    static const char *const keys[] = {"tensor_count", "parameter_count", "bytes", "layers",
                                       "dtypes"};
    for (size_t i = 0; out && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(w, keys[i]);
        if (item)
            cJSON_AddItemToObject(out, keys[i], cJSON_Duplicate(item, true));
    }
}

/* A reference-set match: {path "ref:NAME", name, family, score, verdict, evidence[, signals]}. */
static cJSON *ref_json(const store_ref *r, bool with_signals)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (r->is_parent) {
        char path[300]; /* names are at most 256 bytes (refdb.h) */
        snprintf(path, sizeof path, "ref:%s", r->name);
        cJSON_AddStringToObject(o, "path", path);
    }
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddStringToObject(o, "family", r->family);
    cJSON_AddNumberToObject(o, "score", r->score);
    cJSON_AddStringToObject(o, "verdict", r->verdict);
    cJSON *ev = r->evidence ? cJSON_Parse(r->evidence) : NULL;
    cJSON_AddItemToObject(o, "evidence", ev ? ev : cJSON_CreateNull());
    cJSON_AddBoolToObject(o, "reference", true);
    if (with_signals && r->signals) {
        cJSON *cmp = cJSON_Parse(r->signals);
        cJSON *sig = cmp ? cJSON_DetachItemFromObjectCaseSensitive(cmp, "signals") : NULL;
        cJSON_AddItemToObject(o, "signals", sig ? sig : cJSON_CreateNull());
        cJSON_Delete(cmp);
    }
    return o;
}

/* lineage.parents[]: {path, id, score, verdict, share, main, layers}; layers lists the model's
 * blocks that this parent explains (at least half of the block) and no parent before it does. */
static void add_parents(cJSON *arr, const store_link *links, size_t n)
{
    const char **json = calloc(n ? n : 1, sizeof *json);
    double *share = calloc(n ? n : 1, sizeof *share);
    uint8_t(*blocks)[16] = calloc(n ? n : 1, sizeof *blocks);
    if (json && share && blocks) {
        for (size_t i = 0; i < n; i++)
            json[i] = links[i].signals;
        pa_parent_shares(json, n, share, blocks);
    }
    for (size_t i = 0; i < n; i++) {
        cJSON *p = link_json(&links[i], false);
        if (!p)
            continue;
        if (isfinite(links[i].share))
            cJSON_AddNumberToObject(p, "share", floor(links[i].share * 10000) / 10000);
        else
            cJSON_AddNullToObject(p, "share");
        cJSON_AddBoolToObject(p, "main", links[i].is_parent);
        cJSON *ls = cJSON_AddArrayToObject(p, "layers");
        for (int l = 0; ls && blocks && l < PA_CMP_MAX_LAYERS; l++)
            if (blocks[i][l / 8] & (1u << (l % 8)))
                cJSON_AddItemToArray(ls, cJSON_CreateNumber(l));
        cJSON_AddItemToArray(arr, p);
    }
    free(json);
    free(share);
    free(blocks);
}

static void add_lineage(cJSON *o, store_handle *st, int64_t id)
{
    cJSON *lin = cJSON_AddObjectToObject(o, "lineage");
    if (!lin)
        return;
    store_link parent;
    store_ref ref;
    int has_ref = store_ref_get(st, id, &ref) == 0;
    if (store_parent(st, id, &parent) == 0) {
        cJSON_AddItemToObject(lin, "parent", link_json(&parent, true));
        /* How much of the model its parent explains; the rest is of unknown origin when
         * substantial (the policy then wants the model's own approval). */
        cJSON *cmp = parent.signals ? cJSON_Parse(parent.signals) : NULL;
        const cJSON *share = cJSON_GetObjectItemCaseSensitive(cmp, "unexplained_share");
        const cJSON *unknown = cJSON_GetObjectItemCaseSensitive(cmp, "unknown_origin");
        if (cJSON_IsNumber(share))
            cJSON_AddNumberToObject(lin, "unexplained_share", share->valuedouble);
        if (cJSON_IsBool(unknown))
            cJSON_AddBoolToObject(lin, "unknown_origin", cJSON_IsTrue(unknown));
        cJSON_Delete(cmp);
        store_link_clear(&parent);
    } else if (has_ref && ref.is_parent) {
        /* No parent in the store: the reference entry it derives from (weights evidence). */
        cJSON_AddItemToObject(lin, "parent", ref_json(&ref, true));
    } else {
        cJSON_AddNullToObject(lin, "parent");
    }
    /* Every parent: the main one first, each with the share of the model it explains that no
     * parent before it does, and the model's blocks it contributes. */
    cJSON *pars = cJSON_AddArrayToObject(lin, "parents");
    store_link *plinks = NULL;
    size_t np = 0;
    if (pars && store_parents(st, id, &plinks, &np) == 0)
        add_parents(pars, plinks, np);
    if (np >= 2) {
        /* several parents: what none of them explains */
        double sum = 0;
        for (size_t i = 0; i < np; i++)
            sum += isfinite(plinks[i].share) ? plinks[i].share : 0;
        double left = sum >= 1 ? 0 : 1 - sum;
        cJSON_DeleteItemFromObjectCaseSensitive(lin, "unexplained_share");
        cJSON_DeleteItemFromObjectCaseSensitive(lin, "unknown_origin");
        cJSON_AddNumberToObject(lin, "unexplained_share", round(left * 10000) / 10000);
        cJSON_AddBoolToObject(lin, "unknown_origin", left >= PA_UNKNOWN_ORIGIN_SHARE);
    }
    store_links_free(plinks, np);
    /* Metadata-only evidence: a family hint, never a parent. */
    if (has_ref && !ref.is_parent)
        cJSON_AddItemToObject(lin, "reference_hint", ref_json(&ref, false));
    else
        cJSON_AddNullToObject(lin, "reference_hint");
    if (has_ref)
        store_ref_clear(&ref);
    store_link *links = NULL;
    size_t n = 0;
    cJSON *anc = cJSON_AddArrayToObject(lin, "ancestors");
    if (store_ancestors(st, id, &links, &n) == 0)
        for (size_t i = 0; anc && i < n; i++)
            cJSON_AddItemToArray(anc, link_json(&links[i], false));
    store_links_free(links, n);
    cJSON *kids = cJSON_AddArrayToObject(lin, "children");
    links = NULL;
    n = 0;
    if (store_children(st, id, &links, &n) == 0) {
        for (size_t i = 0; kids && i < n; i++) {
            cJSON *c = link_json(&links[i], false);
            if (c)
                cJSON_AddBoolToObject(c, "is_parent", links[i].is_parent);
            cJSON_AddItemToArray(kids, c);
        }
    }
    store_links_free(links, n);
}

/* Stored paths directly inside one directory: the file units (GGUF) there. */
typedef struct unit_list {
    const char *dir;
    size_t dir_len;
    char **paths;
    size_t n, cap;
} unit_list;

static int collect_unit(void *ctx, const char *path, int64_t model_id, const char *status,
                        int64_t dir_mtime_ns)
{
    (void)model_id;
    (void)status;
    (void)dir_mtime_ns;
    unit_list *l = ctx;
    size_t skip = l->dir_len == 1 ? 1 : l->dir_len + 1; /* "/" or "/a/b" + "/" */
    if (strlen(path) <= skip || strncmp(path, l->dir, l->dir_len) != 0 ||
        (l->dir_len > 1 && path[l->dir_len] != '/') || strchr(path + skip, '/'))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **grown = realloc(l->paths, cap * sizeof *grown);
        if (!grown)
            return 1;
        l->paths = grown;
        l->cap = cap;
    }
    l->paths[l->n] = strdup(path);
    if (l->paths[l->n])
        l->n++;
    return 0;
}

static cJSON *render_model(store_handle *st, queue *q, gate *g, const char *dir);

/* "notes": what the unit's file names say about its weights (a stale index ignored, variants),
 * one line each (pa_weights_notes); absent when there is nothing to say. */
static void add_weight_notes(cJSON *o, const store_file *fl, size_t nf)
{
    const char **names = nf ? malloc(nf * sizeof *names) : NULL;
    if (!names)
        return;
    for (size_t i = 0; i < nf; i++)
        names[i] = fl[i].name;
    char *text = pa_weights_notes(names, nf);
    free(names);
    cJSON *arr = text ? cJSON_AddArrayToObject(o, "notes") : NULL;
    for (char *line = text, *next; arr && line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char shown[2048]; /* file names are anybody's bytes: escaped to printable UTF-8 */
        pa_escape_text(line, strlen(line), shown, sizeof shown);
        cJSON_AddItemToArray(arr, cJSON_CreateString(shown));
    }
    free(text);
}

/* "units": the models that are single files in dir (GGUF), each rendered like a directory. */
static void add_file_units(cJSON *o, store_handle *st, queue *q, gate *g, const char *dir)
{
    unit_list l = {.dir = dir, .dir_len = strlen(dir)};
    store_each_path(st, collect_unit, &l);
    cJSON *arr = cJSON_AddArrayToObject(o, "units");
    for (size_t i = 0; i < l.n; i++) {
        /* Directory units below have their own .provenance; list the file units only. */
        store_model m;
        bool file_unit = false;
        if (store_model_by_path(st, l.paths[i], &m) == 0) {
            size_t len = strlen(l.paths[i]);
            store_file *files = NULL;
            size_t n = 0;
            /* a single-file unit: GGUF, or loose weights (a directory unit has >= 2 files) */
            file_unit = strcmp(m.format, "gguf") == 0 ||
                        (len > 5 && strcmp(l.paths[i] + len - 5, ".gguf") == 0) ||
                        (store_files(st, m.id, &files, &n) == 0 && n == 1 &&
                         strcmp(m.format, "config-only") != 0);
            store_files_free(files, n);
            store_model_clear(&m);
        }
        if (arr && file_unit)
            cJSON_AddItemToArray(arr, render_model(st, q, g, l.paths[i]));
        free(l.paths[i]);
    }
    free(l.paths);
}

/* `approval` ({state: label, by, at, note, record}) and `policy` ({decision, reason, rule, mode,
 * enforced}) from the same cached decision the open() gate uses. */
static void add_policy(cJSON *o, store_handle *st, gate *g, const char *dir, const store_model *m)
{
    gate_verdict v;
    if (!g || gate_unit(g, dir, &v) != 0 || !v.unit) {
        cJSON_AddNullToObject(o, "approval");
        cJSON_AddNullToObject(o, "policy");
        return;
    }
    store_approval a;
    int rc = m->digest[0] ? store_approval_get(st, m->digest, &a) : 1;
    bool have = rc == 0;
    cJSON *ap = policy_approval_to_json(policy_approval_label(v.approved, &v.decision),
                                        have ? a.state : NULL, have ? a.by_uid : 0,
                                        have ? a.at : 0, have ? a.note : NULL);
    if (ap) {
        if (have) {
            cJSON_AddNumberToObject(ap, "by", (double)a.by_uid);
            add_time(ap, "at", a.at);
            cJSON_AddStringToObject(ap, "note", a.note ? a.note : "");
            cJSON_AddBoolToObject(ap, "in_force", v.approved);
        } else {
            cJSON_AddNullToObject(ap, "by");
            cJSON_AddNullToObject(ap, "at");
            cJSON_AddNullToObject(ap, "note");
        }
    }
    cJSON_AddItemToObject(o, "approval", ap ? ap : cJSON_CreateNull());
    if (have)
        store_approval_clear(&a);
    cJSON *pol = policy_decision_to_json(&v.decision);
    cJSON_AddItemToObject(o, "policy", pol ? pol : cJSON_CreateNull());
}

/* "path_bytes_hex": the exact bytes of a path that is not valid UTF-8 (its "path" shows them
 * mapped as Latin-1 characters). */
static void add_path_bytes(cJSON *o, const char *path)
{
    const unsigned char *p = (const unsigned char *)path;
    size_t n = strlen(path);
    bool valid = true;
    for (size_t i = 0; i < n && valid;) {
        size_t len = p[i] < 0x80 ? 1 : pa_utf8_printable(p + i, n - i);
        valid = len > 0;
        i += len;
    }
    if (valid)
        return;
    char *hex = malloc(2 * n + 1);
    if (!hex)
        return;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", p[i]);
    cJSON_AddStringToObject(o, "path_bytes_hex", hex);
    free(hex);
}

static cJSON *render_model(store_handle *st, queue *q, gate *g, const char *dir)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", "provfs.provenance/1");
    cJSON_AddStringToObject(o, "path", dir);
    add_path_bytes(o, dir);
    store_model m;
    int rc = store_model_by_path(st, dir, &m);
    queue_state qs = q ? queue_get_state(q, dir) : QUEUE_NONE;
    const char *status = qs == QUEUE_PENDING     ? "pending"
                         : qs == QUEUE_ANALYZING ? "analyzing"
                         : rc == 0               ? m.status
                                                 : NULL;
    if (!status) {
        /* Not a model unit: say so, with the same schema. */
        cJSON_AddNullToObject(o, "status");
        cJSON_AddBoolToObject(o, "model", false);
        if (rc == 0)
            store_model_clear(&m);
        add_file_units(o, st, q, g, dir);
        return o;
    }
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddBoolToObject(o, "model", true);
    if (rc != 0) {
        /* Queued, never analysed: the policy still judges it (a fresh upload). */
        cJSON_AddNullToObject(o, "id");
        store_model none = {0};
        add_policy(o, st, g, dir, &none);
        return o;
    }
    add_hex_id(o, "id", m.id);
    add_str_or_null(o, "format", m.format);
    add_str_or_null(o, "sha256", m.digest);
    if (strcmp(m.status, "failed") == 0 || strcmp(m.status, "incomplete") == 0)
        add_str_or_null(o, "error", m.error);
    /* A pickle that would run code on load: the global it imports (policy rule unsafe_pickle). */
    char unsafe[200];
    if (strcmp(m.status, "failed") == 0 && pa_unsafe_global(m.error, unsafe, sizeof unsafe))
        cJSON_AddStringToObject(o, "unsafe", unsafe);
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    store_file *fl = NULL;
    size_t nf = 0;
    if (store_files(st, m.id, &fl, &nf) == 0) {
        for (size_t i = 0; files && i < nf; i++) {
            cJSON *f = cJSON_CreateObject();
            if (!f)
                break;
            cJSON_AddStringToObject(f, "name", fl[i].name);
            cJSON_AddNumberToObject(f, "size", (double)fl[i].size);
            add_str_or_null(f, "sha256", fl[i].sha256);
            cJSON_AddItemToArray(files, f);
        }
    }
    add_weight_notes(o, fl, nf);
    store_files_free(fl, nf);
    char *fp_text = NULL;
    cJSON *fp = NULL;
    if (store_fingerprint(st, m.id, &fp_text) == 0)
        fp = cJSON_Parse(fp_text);
    free(fp_text);
    add_fp_member(o, "architecture", fp, "mfi");
    add_fp_member(o, "tokenizer", fp, "tokenizer");
    add_weights(o, fp);
    cJSON_Delete(fp);
    add_lineage(o, st, m.id);
    add_policy(o, st, g, dir, &m);
    add_time(o, "analyzed_at", m.analyzed_at);
    store_model_clear(&m);
    add_file_units(o, st, q, g, dir);
    return o;
}

static cJSON *render_store(store_handle *st, queue *q, gate *g)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "schema", "provfs.store/1");
    store_counts c;
    if (store_counts_get(st, &c) == 0) {
        cJSON_AddNumberToObject(o, "models", (double)c.models);
        cJSON_AddNumberToObject(o, "paths", (double)c.paths);
        cJSON_AddNumberToObject(o, "edges", (double)c.edges);
        cJSON *by = cJSON_AddObjectToObject(o, "status");
        if (by) {
            cJSON_AddNumberToObject(by, "pending", (double)c.pending);
            cJSON_AddNumberToObject(by, "analyzing", (double)c.analyzing);
            cJSON_AddNumberToObject(by, "ready", (double)c.ready);
            cJSON_AddNumberToObject(by, "incomplete", (double)c.incomplete);
            cJSON_AddNumberToObject(by, "failed", (double)c.failed);
        }
    }
    cJSON_AddNumberToObject(o, "blocked", g ? (double)gate_count_blocked(g) : 0);
    /* units this daemon has waiting (in their quiet period) or in analysis: the store's status
     * counts see a unit only once its analysis starts, and "ready" before its edges are written;
     * 0 here means every change seen so far is analysed and linked */
    cJSON_AddNumberToObject(o, "queued", q ? (double)queue_entries(q) : 0);
    policy *p = gate_policy(g);
    cJSON *pol = p ? policy_to_json(p) : NULL;
    if (pol && p && policy_source(p)[0])
        cJSON_AddItemToObject(o, "policy_file", cJSON_CreateString(policy_source(p)));
    policy_unref(p);
    cJSON_AddItemToObject(o, "policy", pol ? pol : cJSON_CreateNull());
    return o;
}

/* Valid JSON for any file name: cJSON copies string bytes as they are, so a name (or a config
 * value) that is not UTF-8 would make the document invalid. Every byte that does not belong to a
 * valid UTF-8 sequence is written as the character of the same number (Latin-1: 0xff becomes
 * U+00FF); documented in fs/README.md, reversible with "path_bytes_hex" where it matters. Only
 * string contents can hold such bytes (cJSON writes everything else in ASCII). */
static char *utf8_fixed(const char *text, size_t n, size_t *out_len)
{
    char *out = malloc(2 * n + 2);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        size_t len = t[i] < 0x80 ? 1 : pa_utf8_printable(t + i, n - i);
        if (len == 0 && t[i] == 0xc2 && i + 1 < n && t[i + 1] >= 0x80 && t[i + 1] <= 0x9f)
            len = 2; /* a C1 control in UTF-8: valid JSON as it is */
        if (len) {
            memcpy(out + o, t + i, len);
            o += len;
            i += len;
        } else {
            out[o++] = (char)(0xc0 | t[i] >> 6);
            out[o++] = (char)(0x80 | (t[i] & 0x3f));
            i++;
        }
    }
    out[o++] = '\n';
    out[o] = '\0';
    *out_len = o;
    return out;
}

char *vfile_render(store_handle *st, queue *q, gate *g, const char *dir, size_t *len)
{
    cJSON *o = strcmp(dir, "/") == 0 ? render_store(st, q, g) : render_model(st, q, g, dir);
    if (!o)
        return NULL;
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return NULL;
    char *out = utf8_fixed(text, strlen(text), len);
    free(text);
    return out;
}
