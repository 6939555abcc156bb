/* Policy decisions for store units, cached. See gate.h and fs/POLICY.md. */
#include "gate.h"

#include "provfs/analyzer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define GATE_BUCKETS 8192
#define GATE_MAX_ENTRIES 65536
#define GATE_MAX_ANCESTORS 64
/* A parent's own parents are decided too, this deep at most; deeper counts as blocked. */
#define GATE_MAX_PARENT_DEPTH 8

typedef struct gate_entry {
    struct gate_entry *next; /* gate.lock */
    char *path;              /* immutable */
    uint64_t generation;     /* key: store_generation() when computed */
    uint64_t serial;         /* key: policy_serial() */
    queue_state qs;          /* key: queue state when computed */
    gate_verdict verdict;
} gate_entry;

#define GATE_LOG_SLOTS 1024
#define GATE_LOG_PER_MINUTE 120 /* syslog lines; more refusals are counted in the next line */

struct gate {
    store_handle *st;  /* immutable, thread-safe */
    queue *q;          /* immutable, thread-safe (may be NULL) */
    policy_slot *slot; /* immutable, thread-safe */
    pthread_mutex_t lock;
    gate_entry *buckets[GATE_BUCKETS]; /* lock */
    size_t n_entries;                  /* lock */
    char *mountpoint;                  /* for the paths in syslog lines; set before use */
    /* Refusals already sent to syslog this minute: a hash of (uid, unit, rule, decision) per
     * slot; a collision only costs one more line. */
    struct {
        uint64_t key;
        int64_t minute;
    } logged[GATE_LOG_SLOTS]; /* lock */
    int64_t log_minute;               /* lock: the minute log_lines counts */
    unsigned log_lines;               /* lock: syslog lines in log_minute */
    unsigned long log_suppressed;     /* lock: lines over the budget since the last line */
    /* The blocked count of the store root's .provenance, for (generation, serial) with no unit
     * in the queue: a decision depends on the store, the policy and the queue state only. */
    bool blocked_valid;         /* lock */
    uint64_t blocked_gen;       /* lock */
    uint64_t blocked_serial;    /* lock */
    int64_t blocked;            /* lock */
};

gate *gate_create(store_handle *st, queue *q, policy_slot *slot)
{
    gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->st = st;
    g->q = q;
    g->slot = slot;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

static void clear_locked(gate *g)
{
    for (size_t b = 0; b < GATE_BUCKETS; b++) {
        gate_entry *e = g->buckets[b];
        while (e) {
            gate_entry *next = e->next;
            free(e->path);
            free(e);
            e = next;
        }
        g->buckets[b] = NULL;
    }
    g->n_entries = 0;
}

void gate_destroy(gate *g)
{
    if (!g)
        return;
    clear_locked(g);
    pthread_mutex_destroy(&g->lock);
    free(g->mountpoint);
    free(g);
}

policy *gate_policy(gate *g)
{
    return g && g->slot ? policy_slot_get(g->slot) : NULL;
}

bool gate_off(gate *g)
{
    policy *p = gate_policy(g);
    bool off = !p || policy_get_mode(p) == POLICY_OFF;
    policy_unref(p);
    return off;
}

static size_t hash_path(const char *path)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        h = (h ^ *c) * 1099511628211ull;
    return (size_t)(h % GATE_BUCKETS);
}

/* ---------------------------------------------------------------- describing a unit */

/* The config's own model_type, from the stored fingerprint (self-declared: reasons only). */
static char *claimed_family(store_handle *st, int64_t id)
{
    pa_fingerprint *fp = NULL;
    if (store_fingerprint_fp(st, id, &fp) != 0)
        return NULL;
    const pa_mfi *mfi = pa_fp_mfi(fp);
    char *out = mfi && mfi->model_type ? strdup(mfi->model_type) : NULL;
    pa_fingerprint_free(fp);
    return out;
}

/* 1 when the model is one file whose SHA-256 is a file of an approved unit; 0, or -1 on error. */
static int content_approved(store_handle *st, int64_t id)
{
    store_file *files = NULL;
    size_t n = 0;
    if (store_files(st, id, &files, &n) != 0)
        return -1;
    int ret = n == 1 && files[0].sha256[0] ? store_content_approved(st, files[0].sha256) : 0;
    store_files_free(files, n);
    return ret;
}

/* The parent edge's comparison says a substantial share of the child is explained by no known
 * parent (pa_compare_result.unknown_origin, stored in the edge's signals JSON). */
static bool edge_unknown_origin(const char *signals)
{
    cJSON *cmp = signals ? cJSON_Parse(signals) : NULL;
    bool unknown = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cmp, "unknown_origin"));
    cJSON_Delete(cmp);
    return unknown;
}

static bool linked_verdict(const char *verdict)
{
    return strcmp(verdict, "derived") == 0 || strcmp(verdict, "identical") == 0 ||
           strcmp(verdict, "adapter") == 0; /* a PEFT adapter of its (checked) base */
}

static int compute(gate *g, const policy *p, const char *dir, queue_state qs, gate_verdict *out,
                   int depth);

/* Several parents: the first parent besides the main one whose own decision (from stored data,
 * as the main parent's lineage is judged) blocks; its path and reason go to why. 1 when one
 * blocks, 0 when none, -1 on a store error. *share_sum gets the parents' shares added up. */
static int other_parents(gate *g, const policy *p, int64_t id, int depth, char *why,
                         size_t whylen, double *share_sum, size_t *n_parents)
{
    store_link *links = NULL;
    size_t n = 0;
    *share_sum = 0;
    *n_parents = 0;
    if (store_parents(g->st, id, &links, &n) != 0)
        return -1;
    *n_parents = n;
    int ret = 0;
    for (size_t i = 0; i < n; i++)
        *share_sum += links[i].share == links[i].share ? links[i].share : 0;
    for (size_t i = 0; n >= 2 && i < n && ret == 0; i++) {
        if (links[i].is_parent || !links[i].path)
            continue;
        if (depth >= GATE_MAX_PARENT_DEPTH) {
            snprintf(why, whylen, "parent %s: its lineage is deeper than %d parents", links[i].path,
                     GATE_MAX_PARENT_DEPTH);
            ret = 1;
            break;
        }
        gate_verdict pv;
        if (compute(g, p, links[i].path, QUEUE_NONE, &pv, depth + 1) != 0) {
            ret = -1;
        } else if (pv.unit && !pv.decision.allow) {
            snprintf(why, whylen, "parent %.256s: %s", links[i].path, pv.decision.reason);
            ret = 1;
        }
    }
    store_links_free(links, n);
    return ret;
}

static int compute(gate *g, const policy *p, const char *dir, queue_state qs, gate_verdict *out,
                   int depth)
{
    memset(out, 0, sizeof *out);
    store_model m;
    int rc = store_model_by_path(g->st, dir, &m);
    if (rc < 0)
        return -1;
    if (rc == 1 && qs == QUEUE_NONE)
        return 0;
    out->unit = true;
    policy_model pm = {0};
    const char *paths[1] = {dir};
    pm.paths = paths;
    pm.n_paths = 1;
    pm.status = qs == QUEUE_PENDING     ? POLICY_PENDING
                : qs == QUEUE_ANALYZING ? POLICY_ANALYZING
                                        : policy_status_parse(m.status);
    store_link *anc = NULL;
    size_t n_anc = 0, n_linked = 0;
    const char *anc_paths[GATE_MAX_ANCESTORS];
    int64_t anc_ids[GATE_MAX_ANCESTORS];
    /* where the model and its linked ancestors were first stored (deny_families) */
    const char *origins[GATE_MAX_ANCESTORS + 1];
    size_t n_origins = 0;
    char *own_origin = NULL;
    char *claim = NULL;
    char parent_why[POLICY_REASON_MAX + 300];
    char unsafe[200] = "";
    double share_sum = 0;
    size_t n_parents = 0;
    bool parent_blocks = false;
    /* Families of derived/identical reference-set matches of the model and its ancestors. */
    char *ref_owned[GATE_MAX_ANCESTORS + 1];
    const char *ref_fams[GATE_MAX_ANCESTORS + 1];
    size_t n_ref = 0;
    int ret = 0;
    if (rc == 0) {
        out->model_id = m.id;
        /* While pending after a write, the stored digest is the old content's. */
        if (qs == QUEUE_NONE && m.digest[0]) {
            store_approval a;
            int arc = store_approval_get(g->st, m.digest, &a);
            if (arc < 0)
                ret = -1;
            else if (arc == 0)
                out->approved = strcmp(a.state, "approved") == 0 &&
                                policy_approval_binds(a.digest, m.digest);
            if (arc == 0)
                store_approval_clear(&a);
            /* A single-file unit with no decision of its own whose bytes are a file of an
             * approved unit is approved with it: a Hugging Face cache blob read through the
             * approved snapshot that links to it. Approval belongs to the content. */
            if (arc == 1 && content_approved(g->st, m.id) == 1)
                out->approved = true;
        }
        /* Blocked whatever the approvals (policy rule unsafe_pickle); while pending after a
         * write the stored error is the old content's, which keeps blocking until analysed. */
        if (strcmp(m.status, "failed") == 0 && pa_unsafe_global(m.error, unsafe, sizeof unsafe))
            pm.unsafe_global = unsafe;
        if (ret == 0 && store_ancestors(g->st, m.id, &anc, &n_anc) != 0)
            ret = -1;
        /* Lineage follows derived/identical edges only; a weak edge ends the chain. */
        for (size_t i = 0; ret == 0 && i < n_anc && i < GATE_MAX_ANCESTORS; i++) {
            if (!linked_verdict(anc[i].verdict))
                break;
            anc_paths[n_linked] = anc[i].path;
            anc_ids[n_linked] = anc[i].id;
            n_linked++;
            if (anc[i].origin_path)
                origins[n_origins++] = anc[i].origin_path;
        }
        if (ret == 0 && n_linked > 0) {
            int any = store_any_approved(g->st, anc_ids, n_linked);
            if (any < 0)
                ret = -1;
            pm.ancestor_approved = any == 1;
        }
        for (size_t i = 0; ret == 0 && i <= n_linked; i++) {
            store_ref r;
            int rr = store_ref_get(g->st, i == 0 ? m.id : anc_ids[i - 1], &r);
            if (rr < 0)
                ret = -1;
            if (rr != 0)
                continue;
            if (r.is_parent && r.family && r.family[0] && linked_verdict(r.verdict)) {
                ref_owned[n_ref] = r.family;
                ref_fams[n_ref] = r.family;
                r.family = NULL;
                n_ref++;
            }
            store_ref_clear(&r);
        }
        if (ret == 0) {
            int pr = other_parents(g, p, m.id, depth, parent_why, sizeof parent_why, &share_sum,
                                   &n_parents);
            if (pr < 0)
                ret = -1;
            parent_blocks = pr == 1;
        }
        claim = ret == 0 ? claimed_family(g->st, m.id) : NULL;
        if (ret == 0 && store_origin_path(g->st, m.id, &own_origin) != 0)
            ret = -1;
        if (own_origin && n_origins < GATE_MAX_ANCESTORS + 1)
            origins[n_origins++] = own_origin;
        store_model_clear(&m);
    }
    pm.approved = out->approved;
    pm.has_linked_ancestor = n_linked > 0 || n_ref > 0;
    /* Parameters the parent does not explain (smuggled tensors, a second unknown base) are an
     * origin of their own: the model is of unknown lineage even though it derives from a known,
     * even approved, parent (policy.c decide_lineage); deny rules still apply through the
     * parent. */
    /* With several parents, what none of them explains. */
    if (n_linked > 0 && (n_parents >= 2 ? 1 - share_sum >= PA_UNKNOWN_ORIGIN_SHARE
                                        : edge_unknown_origin(anc[0].signals))) {
        pm.unknown_origin = true;
        out->unknown_origin = true;
    }
    pm.blocked_parent = parent_blocks ? parent_why : NULL;
    pm.ref_families = ref_fams;
    pm.n_ref_families = n_ref;
    pm.ancestor_paths = anc_paths;
    pm.n_ancestor_paths = n_linked;
    pm.origin_paths = origins;
    pm.n_origin_paths = n_origins;
    pm.claimed_family = claim;
    if (ret == 0)
        policy_decide(p, &pm, &out->decision);
    free(claim);
    free(own_origin);
    for (size_t i = 0; i < n_ref; i++)
        free(ref_owned[i]);
    store_links_free(anc, n_anc);
    return ret;
}

/* Decides for dir with the policy p, through the cache. */
static int unit_cached(gate *g, const policy *p, const char *dir, gate_verdict *out,
                       queue_state *qs_out)
{
    /* The key is read before the store is: a write committed meanwhile changes the generation,
     * so a result computed from older data is never found under a newer key. */
    uint64_t gen = store_generation(g->st);
    uint64_t serial = policy_serial(p);
    queue_state qs = g->q ? queue_get_state(g->q, dir) : QUEUE_NONE;
    if (qs_out)
        *qs_out = qs;
    size_t b = hash_path(dir);
    pthread_mutex_lock(&g->lock);
    for (gate_entry *e = g->buckets[b]; e; e = e->next) {
        if (strcmp(e->path, dir) == 0 && e->generation == gen && e->serial == serial &&
            e->qs == qs) {
            *out = e->verdict;
            pthread_mutex_unlock(&g->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&g->lock);
    if (compute(g, p, dir, qs, out, 0) != 0)
        return -1;
    gate_entry *fresh = calloc(1, sizeof *fresh);
    char *copy = fresh ? strdup(dir) : NULL;
    if (!copy) {
        free(fresh);
        return 0; /* decided, just not cached */
    }
    fresh->path = copy;
    fresh->generation = gen;
    fresh->serial = serial;
    fresh->qs = qs;
    fresh->verdict = *out;
    pthread_mutex_lock(&g->lock);
    /* Drop this path's stale entries; start over when the table is full. */
    for (gate_entry **pp = &g->buckets[b]; *pp;) {
        gate_entry *e = *pp;
        if (strcmp(e->path, dir) == 0) {
            *pp = e->next;
            free(e->path);
            free(e);
            g->n_entries--;
        } else {
            pp = &e->next;
        }
    }
    if (g->n_entries >= GATE_MAX_ENTRIES)
        clear_locked(g);
    fresh->next = g->buckets[b];
    g->buckets[b] = fresh;
    g->n_entries++;
    pthread_mutex_unlock(&g->lock);
    return 0;
}

int gate_unit(gate *g, const char *dir, gate_verdict *out)
{
    memset(out, 0, sizeof *out);
    policy *p = gate_policy(g);
    if (!p)
        return 0;
    int ret = unit_cached(g, p, dir, out, NULL);
    policy_unref(p);
    return ret;
}

/* ---------------------------------------------------------------- open */

gate_stamp gate_current_stamp(gate *g)
{
    gate_stamp s = {.generation = store_generation(g->st)};
    policy *p = gate_policy(g);
    s.serial = p ? policy_serial(p) : 0;
    s.off = !p || policy_get_mode(p) == POLICY_OFF;
    policy_unref(p);
    return s;
}

bool gate_settled(gate *g, const char *path)
{
    if (!g->q)
        return true;
    char cur[PATH_MAX];
    if (snprintf(cur, sizeof cur, "%s", path) >= (int)sizeof cur)
        return false;
    for (;;) {
        if (queue_get_state(g->q, cur) != QUEUE_NONE)
            return false;
        char *slash = strrchr(cur, '/');
        if (!slash || (slash == cur && cur[1] == '\0'))
            return true;
        if (slash == cur)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}

/* True when the bytes on fd announce a model format (-1: unknown bytes, which count as one). A
 * name exemption (README.md, LICENSE, config.json, ...) holds only for bytes that are not a
 * model: weights renamed or hard-linked to such a name stay gated. */
static bool model_bytes(int fd)
{
    if (fd < 0)
        return true;
    uint8_t head[PA_SNIFF_BYTES];
    ssize_t n = pread(fd, head, sizeof head, 0);
    if (n < 0)
        return true;
    return pa_sniff_format(head, (size_t)n) != NULL;
}

/* True when sb is the file an analysis recorded as rec. */
static bool same_file(const struct stat *sb, const store_file *rec)
{
    return (uint64_t)sb->st_size == rec->size && store_ts_ns(sb->st_mtim) == rec->mtime_ns &&
           store_ts_ns(sb->st_ctim) == rec->ctime_ns && (uint64_t)sb->st_ino == rec->ino;
}

/* 1 when sb is not the name's file the last analysis of the unit at unit read (or that analysis
 * kept no identities: a row of an older version, which counts as changed); 0 when it is, or name
 * is no file of the unit's; -1 on error. */
static int file_changed(gate *g, const char *unit, const char *name, const struct stat *sb)
{
    store_file rec;
    int rc = store_file_id(g->st, unit, name, &rec);
    if (rc < 0 || rc == 1)
        return rc < 0 ? -1 : 0;
    return rc == 2 || !same_file(sb, &rec);
}

/* The units other than those around the held path whose analysis read the inode on fd (see
 * gate_check_open): 1 with out->stale set when one of them is stale, 0 with out filled when one
 * blocks (or nothing does), -1 on error or when too many units hold it to look at. */
#define GATE_MAX_INODE_UNITS 64
static int other_units(gate *g, const policy *p, int fd, const struct stat *sb, gate_open *out,
                       bool *settled)
{
    if (!S_ISREG(sb->st_mode) || sb->st_nlink <= 1)
        return 0;
    char **paths = NULL;
    size_t n = 0;
    if (store_units_of_inode(g->st, (uint64_t)sb->st_ino, &paths, &n) != 0)
        return -1;
    int ret = n > GATE_MAX_INODE_UNITS ? -1 : 0;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        gate_verdict v;
        queue_state qs = QUEUE_NONE;
        if (unit_cached(g, p, paths[i], &v, &qs) != 0) {
            ret = -1;
            break;
        }
        if (!v.unit)
            continue;
        *settled = *settled && qs == QUEUE_NONE;
        store_file rec;
        char name[NAME_MAX + 1] = "";
        int rc = store_file_id_ino(g->st, paths[i], (uint64_t)sb->st_ino, &rec, name, sizeof name);
        if (rc < 0) {
            ret = -1;
            break;
        }
        if (rc == 1)
            continue; /* no longer a file of that unit (a row the next analysis replaces) */
        if (qs == QUEUE_NONE && v.model_id > 0 && !same_file(sb, &rec)) {
            out->stale = true;
            snprintf(out->stale_unit, sizeof out->stale_unit, "%s", paths[i]);
            ret = 1;
            break;
        }
        const char *base = strrchr(paths[i], '/');
        bool own = base && strcmp(base + 1, name) == 0; /* the file itself may be the unit */
        if (!v.decision.allow && (own || policy_file_gated(name) || model_bytes(fd))) {
            out->applies = true;
            out->enforced = v.decision.enforced;
            out->model_id = v.model_id;
            out->rule = v.decision.rule;
            out->decision = policy_event_decision(&v.decision);
            /* (the reason names the unit: this file's path is another) */
            int w = snprintf(out->reason, sizeof out->reason, "%s", paths[i]);
            if (w >= 0 && (size_t)w < sizeof out->reason)
                snprintf(out->reason + w, sizeof out->reason - (size_t)w, ": %.*s",
                         (int)(sizeof out->reason - (size_t)w), v.decision.reason);
            break;
        }
    }
    store_paths_free(paths, n);
    return ret;
}

int gate_check_open(gate *g, const char *path, int fd, gate_open *out)
{
    memset(out, 0, sizeof *out);
    policy *p = gate_policy(g);
    if (!p)
        return 0;
    int ret = 0;
    if (policy_get_mode(p) == POLICY_OFF)
        goto out;
    char unit[PATH_MAX];
    if (snprintf(unit, sizeof unit, "%s", path) >= (int)sizeof unit)
        goto out;
    /* the file on fd, once for every comparison below (unknown: fails closed) */
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) != 0) {
        ret = -1;
        goto out;
    }
    /* Every enclosing unit counts: the file itself (a GGUF unit), its directory, and up. */
    size_t plen = strlen(path), len = plen;
    const char *base = strrchr(path, '/');
    bool settled = true;
    for (;;) {
        /* path relative to the unit (a file unit: its own name) */
        const char *name = len == plen ? (base ? base + 1 : path)
                           : len == 1  ? path + 1
                                       : path + len + 1;
        gate_verdict v;
        queue_state qs = QUEUE_NONE;
        if (unit_cached(g, p, unit, &v, &qs) != 0) {
            ret = -1;
            break;
        }
        settled = settled && qs == QUEUE_NONE;
        /* A settled unit's answer holds for the bytes its analysis read: a file of it changed
         * unseen (through another name of the inode, or in BACKING) makes it pending first. */
        if (v.unit && v.model_id > 0 && qs == QUEUE_NONE && fd >= 0) {
            int changed = file_changed(g, unit, name, &sb);
            if (changed != 0) {
                if (changed < 0) {
                    ret = -1;
                    break;
                }
                out->stale = true;
                snprintf(out->stale_unit, sizeof out->stale_unit, "%s", unit);
                policy_unref(p);
                return 0;
            }
        }
        /* A file unit (GGUF) is gated whatever its own name; in a directory unit, names that
         * are documentation or configuration are open unless their bytes are a model's. */
        if (v.unit && !v.decision.allow &&
            (len == plen || policy_file_gated(name) || model_bytes(fd))) {
            out->applies = true;
            out->enforced = v.decision.enforced;
            out->model_id = v.model_id;
            out->rule = v.decision.rule;
            out->decision = policy_event_decision(&v.decision);
            snprintf(out->reason, sizeof out->reason, "%s", v.decision.reason);
            break;
        }
        if (len <= 1)
            break;
        char *slash = strrchr(unit, '/');
        if (!slash)
            break;
        len = slash == unit ? 1 : (size_t)(slash - unit);
        unit[len] = '\0';
    }
    /* A file with other names is a file of every unit any of them is in, whichever name the
     * daemon holds it by (a user chooses that one: the kernel forgets, a reopen by handle comes
     * back by any alias): the units whose analysis read this inode decide too. */
    if (ret == 0 && !out->applies && fd >= 0) {
        int rc = other_units(g, p, fd, &sb, out, &settled);
        if (rc < 0)
            ret = -1;
        else if (rc > 0) {
            policy_unref(p);
            return 0; /* stale */
        }
    }
    out->cacheable = ret == 0 && !out->applies && settled;
out:
    policy_unref(p);
    return ret;
}

int gate_check_unresolved(gate *g, int fd, gate_open *out)
{
    memset(out, 0, sizeof *out);
    policy *p = gate_policy(g);
    if (!p)
        return 0;
    if (policy_get_mode(p) != POLICY_OFF && model_bytes(fd)) {
        out->applies = true;
        out->enforced = policy_get_mode(p) == POLICY_ENFORCE;
        out->rule = "unresolved-path";
        out->decision = out->enforced ? "refused" : "would-refuse";
        snprintf(out->reason, sizeof out->reason,
                 "the file's path in the store cannot be resolved (deleted, or too long): its "
                 "unit and decision are unknown");
    }
    policy_unref(p);
    return 0;
}

void gate_set_mountpoint(gate *g, const char *mountpoint)
{
    free(g->mountpoint);
    g->mountpoint = mountpoint ? strdup(mountpoint) : NULL;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* True when this refusal gets a syslog line: the first time (uid, unit, path, rule, decision)
 * is seen in this minute, within GATE_LOG_PER_MINUTE lines a minute. *suppressed: how many
 * lines were left out (over the budget) since the last line written. */
static bool log_first_this_minute(gate *g, const gate_open *o, const char *path, uint32_t uid,
                                  unsigned long *suppressed)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, &uid, sizeof uid);
    h = fnv1a(h, &o->model_id, sizeof o->model_id);
    h = fnv1a(h, path, strlen(path) + 1);
    h = fnv1a(h, o->rule ? o->rule : "", o->rule ? strlen(o->rule) + 1 : 0);
    h = fnv1a(h, o->decision, strlen(o->decision));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t minute = (int64_t)ts.tv_sec / 60;
    pthread_mutex_lock(&g->lock);
    size_t slot = h % GATE_LOG_SLOTS;
    bool first = g->logged[slot].key != h || g->logged[slot].minute != minute;
    if (first) {
        if (g->log_minute != minute) {
            g->log_minute = minute;
            g->log_lines = 0;
        }
        if (g->log_lines >= GATE_LOG_PER_MINUTE) {
            g->log_suppressed++;
            first = false;
        } else {
            g->log_lines++;
            g->logged[slot].key = h;
            g->logged[slot].minute = minute;
            *suppressed = g->log_suppressed;
            g->log_suppressed = 0;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return first;
}

/* text in single quotes for a shell ('\'' for each '), so a command copied from a log line
 * stays one argument whatever the file name. */
static void shell_quote(const char *text, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen < 3) {
        if (outlen)
            out[0] = '\0';
        return;
    }
    out[o++] = '\'';
    for (const char *c = text; *c && o + 6 < outlen; c++) {
        if (*c == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *c;
        }
    }
    out[o++] = '\'';
    out[o] = '\0';
}

/* One syslog line per refusal (the same one within a minute once, at most GATE_LOG_PER_MINUTE
 * lines a minute): who, what, which rule, and
 * the two commands that explain and lift it. Names come from users: control characters and
 * bytes that are not UTF-8 are escaped (pa_escape_text), so a name cannot forge a line. */
static void log_syslog(gate *g, const gate_open *o, const char *path, uint32_t uid, int32_t pid)
{
    unsigned long suppressed = 0;
    if (!log_first_this_minute(g, o, path, uid, &suppressed))
        return;
    const char *mnt = g->mountpoint ? g->mountpoint : "";
    size_t mlen = strlen(mnt);
    if (mlen == 1 && mnt[0] == '/')
        mlen = 0;
    char full[PATH_MAX + 64], where[3 * PATH_MAX], quoted[4 * PATH_MAX],
        why[3 * sizeof o->reason];
    snprintf(full, sizeof full, "%.*s%s", (int)mlen, mnt, path);
    pa_escape_text(full, strlen(full), where, sizeof where);
    shell_quote(where, quoted, sizeof quoted);
    pa_escape_text(o->reason, strnlen(o->reason, sizeof o->reason), why, sizeof why);
    bool refused = strcmp(o->decision, "refused") == 0;
    char more[96] = "";
    if (suppressed)
        snprintf(more, sizeof more, " (%lu more refusals were not logged: over %d lines a minute)",
                 suppressed, GATE_LOG_PER_MINUTE);
    syslog(refused ? LOG_WARNING : LOG_NOTICE,
           "%s open of %s by uid %u (pid %d): rule %s: %s; see why: provctl check %s; "
           "an admin lifts it: provctl approve %s%s",
           refused ? "refused" : "would refuse (audit mode)", where, uid, (int)pid,
           o->rule ? o->rule : "?", why, quoted, quoted, suppressed ? more : "");
}

void gate_log_open(gate *g, const gate_open *o, const char *path, uint32_t uid, int32_t pid)
{
    if (!o->applies || !o->decision)
        return;
    store_policy_event(g->st, uid, pid, path, o->model_id, o->rule, o->decision, o->reason);
    log_syslog(g, o, path, uid, pid);
}

/* ---------------------------------------------------------------- counts */

typedef struct count_ctx {
    gate *g;
    const policy *p;
    int64_t blocked;
} count_ctx;

static int count_one(void *ctx, const char *path, int64_t model_id, const char *status,
                     int64_t dir_mtime_ns)
{
    (void)model_id;
    (void)status;
    (void)dir_mtime_ns;
    count_ctx *c = ctx;
    gate_verdict v;
    if (unit_cached(c->g, c->p, path, &v, NULL) == 0 && v.unit && !v.decision.allow)
        c->blocked++;
    return 0;
}

int64_t gate_count_blocked(gate *g)
{
    policy *p = gate_policy(g);
    if (!p)
        return 0;
    count_ctx c = {.g = g, .p = p};
    /* The key is read first: a write committed meanwhile changes it (see unit_cached). */
    uint64_t gen = store_generation(g->st), serial = policy_serial(p);
    bool idle = !g->q || queue_entries(g->q) == 0;
    pthread_mutex_lock(&g->lock);
    bool hit = idle && g->blocked_valid && g->blocked_gen == gen && g->blocked_serial == serial;
    int64_t cached = g->blocked;
    pthread_mutex_unlock(&g->lock);
    if (hit) {
        policy_unref(p);
        return cached;
    }
    if (policy_get_mode(p) != POLICY_OFF)
        store_each_path(g->st, count_one, &c);
    policy_unref(p);
    if (idle && (!g->q || queue_entries(g->q) == 0)) {
        pthread_mutex_lock(&g->lock);
        g->blocked_valid = true;
        g->blocked_gen = gen;
        g->blocked_serial = serial;
        g->blocked = c.blocked;
        pthread_mutex_unlock(&g->lock);
    }
    return c.blocked;
}
