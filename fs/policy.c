/* The policy engine: policy.json parsing and validation, decisions, approval-note helpers and the
 * reload slot. Semantics: fs/POLICY.md. */
#include "policy.h"

#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct policy {
    atomic_ulong refs;
    uint64_t serial;
    policy_mode mode;
    policy_require require;
    bool block_pending;
    bool allow_unsafe_pickle;
    char **allow; /* fnmatch patterns */
    size_t n_allow;
    char **deny;
    size_t n_deny;
    char *source;
};

static atomic_uint_fast64_t policy_next_serial = 1;

const char policy_default_text[] = "{\n"
                                   "  \"mode\": \"audit\",\n"
                                   "  \"require_approval\": \"unknown-lineage\",\n"
                                   "  \"allow_families\": [],\n"
                                   "  \"deny_families\": [],\n"
                                   "  \"block_pending\": false,\n"
                                   "  \"allow_unsafe_pickle\": false\n"
                                   "}\n";

static const char *const mode_names[] = {"off", "audit", "enforce"};
static const char *const require_names[] = {"never", "unknown-lineage", "always"};
static const char *const status_names[] = {"pending", "analyzing", "ready", "incomplete", "failed"};

/* ---------------------------------------------------------------- lifetime */

static void free_patterns(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static policy *policy_alloc(const char *source)
{
    policy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->source = strdup(source ? source : "");
    if (!p->source) {
        free(p);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->serial = atomic_fetch_add(&policy_next_serial, 1);
    p->mode = POLICY_AUDIT;
    p->require = POLICY_REQUIRE_UNKNOWN_LINEAGE;
    p->block_pending = false;
    return p;
}

static void policy_destroy(policy *p)
{
    free_patterns(p->allow, p->n_allow);
    free_patterns(p->deny, p->n_deny);
    free(p->source);
    free(p);
}

policy *policy_ref(policy *p)
{
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void policy_unref(policy *p)
{
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        policy_destroy(p);
}

void policy_free(policy *p)
{
    policy_unref(p);
}

policy *policy_default(void)
{
    return policy_alloc("");
}

/* ---------------------------------------------------------------- parsing */

/* Copies a key for a message: at most 64 bytes, control characters as '?'. */
static void printable_key(const char *key, char out[72])
{
    size_t n = 0;
    for (const unsigned char *k = (const unsigned char *)key; *k && n < 64; k++)
        out[n++] = (*k < 0x20 || *k == 0x7f || *k == '"' || *k == '\\') ? '?' : (char)*k;
    if (key[n] && n == 64) {
        out[n++] = '.';
        out[n++] = '.';
        out[n++] = '.';
    }
    out[n] = '\0';
}

static bool has_control(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return true;
    return false;
}

static int parse_enum(const cJSON *v, const char *const *names, size_t n)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v->valuestring, names[i]) == 0)
            return (int)i;
    return -1;
}

/* Parses one family list; returns 0 or -1 with errbuf set. */
static int parse_patterns(const cJSON *v, const char *label, const char *key, char ***out,
                          size_t *n_out, char *errbuf, size_t errlen)
{
    if (!cJSON_IsArray(v)) {
        snprintf(errbuf, errlen, "%s: \"%s\" must be an array of glob strings", label, key);
        return -1;
    }
    int count = cJSON_GetArraySize(v);
    if (count > POLICY_MAX_PATTERNS) {
        snprintf(errbuf, errlen, "%s: \"%s\" has %d patterns (at most %d)", label, key, count,
                 POLICY_MAX_PATTERNS);
        return -1;
    }
    char **list = calloc(count > 0 ? (size_t)count : 1, sizeof *list);
    if (!list) {
        snprintf(errbuf, errlen, "%s: out of memory", label);
        return -1;
    }
    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        const char *why = NULL;
        if (!cJSON_IsString(item) || !item->valuestring)
            why = "must be a string";
        else if (!item->valuestring[0])
            why = "must not be empty";
        else if (strlen(item->valuestring) > POLICY_MAX_PATTERN)
            why = "is too long";
        else if (has_control(item->valuestring))
            why = "contains a control character";
        else {
            int rc = fnmatch(item->valuestring, "", 0);
            if (rc != 0 && rc != FNM_NOMATCH)
                why = "is not a valid glob pattern";
        }
        if (why) {
            snprintf(errbuf, errlen, "%s: \"%s\"[%zu] %s", label, key, n, why);
            free_patterns(list, n);
            return -1;
        }
        list[n] = strdup(item->valuestring);
        if (!list[n]) {
            snprintf(errbuf, errlen, "%s: out of memory", label);
            free_patterns(list, n);
            return -1;
        }
        n++;
    }
    *out = list;
    *n_out = n;
    return 0;
}

enum { K_MODE, K_REQUIRE, K_ALLOW, K_DENY, K_PENDING, K_UNSAFE, N_KEYS };
static const char *const key_names[N_KEYS] = {"mode",          "require_approval",
                                              "allow_families", "deny_families",
                                              "block_pending", "allow_unsafe_pickle"};

int policy_parse(const char *text, size_t len, const char *label, policy **out, char *errbuf,
                 size_t errlen)
{
    *out = NULL;
    if (errlen)
        errbuf[0] = '\0';
    pa_error perr = {0};
    cJSON *root = pa_json_parse(text, len, label, &perr);
    if (!root) {
        snprintf(errbuf, errlen, "%s", perr.msg);
        return -1;
    }
    policy *p = NULL;
    if (!cJSON_IsObject(root)) {
        snprintf(errbuf, errlen, "%s: the policy must be a JSON object", label);
        goto fail;
    }
    p = policy_alloc(label);
    if (!p) {
        snprintf(errbuf, errlen, "%s: out of memory", label);
        goto fail;
    }
    bool seen[N_KEYS] = {false};
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        const char *key = item->string ? item->string : "";
        int k = 0;
        while (k < N_KEYS && strcmp(key, key_names[k]) != 0)
            k++;
        char shown[72];
        printable_key(key, shown);
        if (k == N_KEYS) {
            snprintf(errbuf, errlen,
                     "%s: unknown key \"%s\" (known: mode, require_approval, allow_families, "
                     "deny_families, block_pending, allow_unsafe_pickle)",
                     label, shown);
            goto fail;
        }
        if (seen[k]) {
            snprintf(errbuf, errlen, "%s: \"%s\" appears more than once", label, key_names[k]);
            goto fail;
        }
        seen[k] = true;
        int v;
        switch (k) {
        case K_MODE:
            if ((v = parse_enum(item, mode_names, 3)) < 0) {
                snprintf(errbuf, errlen, "%s: \"mode\" must be off, audit or enforce", label);
                goto fail;
            }
            p->mode = (policy_mode)v;
            break;
        case K_REQUIRE:
            if ((v = parse_enum(item, require_names, 3)) < 0) {
                snprintf(errbuf, errlen,
                         "%s: \"require_approval\" must be never, unknown-lineage or always",
                         label);
                goto fail;
            }
            p->require = (policy_require)v;
            break;
        case K_ALLOW:
            if (parse_patterns(item, label, "allow_families", &p->allow, &p->n_allow, errbuf,
                               errlen) != 0)
                goto fail;
            break;
        case K_DENY:
            if (parse_patterns(item, label, "deny_families", &p->deny, &p->n_deny, errbuf,
                               errlen) != 0)
                goto fail;
            break;
        case K_PENDING:
            if (!cJSON_IsBool(item)) {
                snprintf(errbuf, errlen, "%s: \"block_pending\" must be true or false", label);
                goto fail;
            }
            p->block_pending = cJSON_IsTrue(item);
            break;
        case K_UNSAFE:
            if (!cJSON_IsBool(item)) {
                snprintf(errbuf, errlen, "%s: \"allow_unsafe_pickle\" must be true or false",
                         label);
                goto fail;
            }
            p->allow_unsafe_pickle = cJSON_IsTrue(item);
            break;
        }
    }
    cJSON_Delete(root);
    *out = p;
    return 0;
fail:
    if (p)
        policy_destroy(p);
    cJSON_Delete(root);
    return -1;
}

int policy_load(const char *path, policy **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    pa_error perr = {0};
    char *text = NULL;
    size_t len = 0;
    if (pa_read_file(path, POLICY_MAX_FILE, &text, &len, &perr) != PA_OK) {
        snprintf(errbuf, errlen, "%s", perr.msg);
        return -1;
    }
    int rc = policy_parse(text, len, path, out, errbuf, errlen);
    free(text);
    return rc;
}

static void sync_parent_dir(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash == dir)
        name = "/";
    else if (slash) {
        *slash = '\0';
        name = dir;
    }
    int fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int policy_write_default(const char *path, char *errbuf, size_t errlen)
{
    struct stat sb;
    if (lstat(path, &sb) == 0)
        return 1;
    if (errno != ENOENT) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(path) + sizeof ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) {
        snprintf(errbuf, errlen, "%s: out of memory", path);
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(errbuf, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    size_t len = sizeof policy_default_text - 1, done = 0;
    int err = 0;
    if (fchmod(fd, 0644) != 0)
        err = errno;
    while (!err && done < len) {
        ssize_t w = write(fd, policy_default_text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = w < 0 ? errno : EIO;
        else
            done += (size_t)w;
    }
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    int ret = -1;
    bool tmp_left = true;
    if (err) {
        snprintf(errbuf, errlen, "%s: cannot write: %s", tmp, strerror(err));
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
        ret = 0;
        tmp_left = false;
    } else if (errno == EEXIST) {
        ret = 1;
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        /* No RENAME_NOREPLACE on this filesystem: a hard link is just as atomic and exclusive. */
        if (link(tmp, path) == 0)
            ret = 0;
        else if (errno == EEXIST)
            ret = 1;
        else
            snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
    } else {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
    }
    if (tmp_left)
        unlink(tmp);
    if (ret == 0)
        sync_parent_dir(path);
    free(tmp);
    return ret;
}

/* ---------------------------------------------------------------- accessors */

policy_mode policy_get_mode(const policy *p)
{
    return p->mode;
}

policy_require policy_get_require(const policy *p)
{
    return p->require;
}

bool policy_block_pending(const policy *p)
{
    return p->block_pending;
}

bool policy_allow_unsafe_pickle(const policy *p)
{
    return p->allow_unsafe_pickle;
}

size_t policy_n_allow(const policy *p)
{
    return p->n_allow;
}

size_t policy_n_deny(const policy *p)
{
    return p->n_deny;
}

const char *policy_allow_pattern(const policy *p, size_t i)
{
    return i < p->n_allow ? p->allow[i] : NULL;
}

const char *policy_deny_pattern(const policy *p, size_t i)
{
    return i < p->n_deny ? p->deny[i] : NULL;
}

const char *policy_source(const policy *p)
{
    return p->source;
}

uint64_t policy_serial(const policy *p)
{
    return p->serial;
}

const char *policy_mode_name(policy_mode mode)
{
    return (unsigned)mode < 3 ? mode_names[mode] : "?";
}

const char *policy_require_name(policy_require req)
{
    return (unsigned)req < 3 ? require_names[req] : "?";
}

static cJSON *patterns_json(char *const *list, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *s = cJSON_CreateString(list[i]);
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

cJSON *policy_to_json(const policy *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *allow = patterns_json(p->allow, p->n_allow);
    cJSON *deny = patterns_json(p->deny, p->n_deny);
    bool ok = allow && deny && cJSON_AddStringToObject(o, "mode", policy_mode_name(p->mode)) &&
              cJSON_AddStringToObject(o, "require_approval", policy_require_name(p->require)) &&
              cJSON_AddItemToObject(o, "allow_families", allow);
    if (ok)
        allow = NULL;
    ok = ok && cJSON_AddItemToObject(o, "deny_families", deny);
    if (ok)
        deny = NULL;
    ok = ok && cJSON_AddBoolToObject(o, "block_pending", p->block_pending);
    ok = ok && cJSON_AddBoolToObject(o, "allow_unsafe_pickle", p->allow_unsafe_pickle);
    cJSON_Delete(allow);
    cJSON_Delete(deny);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------- decisions */

policy_status policy_status_parse(const char *name)
{
    for (size_t i = 0; name && i < sizeof status_names / sizeof *status_names; i++)
        if (strcmp(name, status_names[i]) == 0)
            return (policy_status)i;
    return POLICY_FAILED;
}

const char *policy_status_name(policy_status status)
{
    return (unsigned)status < sizeof status_names / sizeof *status_names ? status_names[status]
                                                                         : "?";
}

/* First pattern of list matching s, or NULL. Paths are matched case-sensitively and '*' crosses
 * '/', so a pattern ending in '*' covers a whole subtree; family names are matched ignoring case.
 */
static const char *match_any(char *const *list, size_t n, const char *s, bool family)
{
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (fnmatch(list[i], s, family ? FNM_CASEFOLD : 0) == 0)
            return list[i];
    return NULL;
}

typedef struct match {
    const char *pattern; /* NULL: no match */
    const char *what;    /* "path", "ancestor", "reference family" */
    const char *subject;
} match;

/* The first of the model's paths, ancestors' paths and reference families matching list. */
static match match_model(char *const *list, size_t n, const policy_model *m)
{
    match r = {0};
    for (size_t i = 0; i < m->n_paths && !r.pattern; i++)
        if ((r.pattern = match_any(list, n, m->paths[i], false)))
            r.what = "path", r.subject = m->paths[i];
    for (size_t i = 0; i < m->n_ancestor_paths && !r.pattern; i++)
        if ((r.pattern = match_any(list, n, m->ancestor_paths[i], false)))
            r.what = "ancestor", r.subject = m->ancestor_paths[i];
    for (size_t i = 0; i < m->n_ref_families && !r.pattern; i++)
        if ((r.pattern = match_any(list, n, m->ref_families[i], true)))
            r.what = "reference family", r.subject = m->ref_families[i];
    return r;
}

/* The first origin path (where the model or an ancestor was first stored) matching list. */
static match match_origin(char *const *list, size_t n, const policy_model *m)
{
    match r = {0};
    for (size_t i = 0; i < m->n_origin_paths && !r.pattern; i++)
        if (m->origin_paths[i] && (r.pattern = match_any(list, n, m->origin_paths[i], false)))
            r.what = "first stored at", r.subject = m->origin_paths[i];
    return r;
}

static const char *nearest_ancestor(const policy_model *m)
{
    for (size_t i = 0; i < m->n_ancestor_paths; i++)
        if (m->ancestor_paths[i])
            return m->ancestor_paths[i];
    return NULL;
}

static void set(policy_decision *d, bool allow, const char *rule)
{
    d->allow = allow;
    d->rule = rule;
}

/* require_approval: unknown-lineage, for a model that is not approved itself. */
static void decide_lineage(const policy *p, const policy_model *m, policy_decision *d)
{
    const char *anc = nearest_ancestor(m);
    if (m->unknown_origin) {
        /* Smuggled tensors or a second, unknown base never ride on the parent's standing. */
        set(d, false, "unknown_origin");
        snprintf(d->reason, sizeof d->reason,
                 "not approved, and a substantial share of its parameters is explained by no "
                 "known parent (unknown origin%s%s)",
                 anc ? "; parent " : "", anc ? anc : "");
        return;
    }
    if (m->ancestor_approved) {
        set(d, true, "require_approval");
        snprintf(d->reason, sizeof d->reason,
                 "known lineage: derives from an approved ancestor%s%s", anc ? " via " : "",
                 anc ? anc : "");
        return;
    }
    if (p->n_allow > 0) {
        match a = match_model(p->allow, p->n_allow, m);
        if (a.pattern) {
            set(d, true, "allow_families");
            snprintf(d->reason, sizeof d->reason,
                     "known lineage: %s %s matches allow_families \"%s\"", a.what, a.subject,
                     a.pattern);
        } else {
            set(d, false, "allow_families");
            snprintf(d->reason, sizeof d->reason,
                     "not approved, and no path, ancestor or reference family matches "
                     "allow_families");
        }
        return;
    }
    if (m->n_ref_families > 0 && m->ref_families[0]) {
        set(d, true, "require_approval");
        snprintf(d->reason, sizeof d->reason, "known lineage: reference family %s",
                 m->ref_families[0]);
        return;
    }
    set(d, false, "require_approval");
    if (m->has_linked_ancestor && anc)
        snprintf(d->reason, sizeof d->reason,
                 "not approved, and its lineage is not trusted: no approved ancestor or reference "
                 "match (parent %s)",
                 anc);
    else
        snprintf(
            d->reason, sizeof d->reason,
            "not approved, and its lineage is unknown: no derived or identical ancestor in the "
            "store or reference set");
}

void policy_decide(const policy *p, const policy_model *m, policy_decision *d)
{
    memset(d, 0, sizeof *d);
    d->mode = p->mode;
    if (p->mode == POLICY_OFF) {
        set(d, true, "off");
        snprintf(d->reason, sizeof d->reason, "policy mode is off");
    } else if (m->unsafe_global && !p->allow_unsafe_pickle) {
        /* Loading it would run code: no approval lifts that, only the policy's own key (an
         * approval follows content digests, and the same bytes are as unsafe anywhere). */
        set(d, false, "unsafe_pickle");
        snprintf(d->reason, sizeof d->reason,
                 "unsafe pickle: loading it would import %.160s (an approval does not lift this; "
                 "allow_unsafe_pickle is false)",
                 m->unsafe_global);
    } else if (m->approved) {
        /* The most specific decision there is: an admin approved exactly this content. */
        set(d, true, "approval");
        snprintf(d->reason, sizeof d->reason, "approved by an admin (bound to the content digest)");
    } else if (p->n_deny > 0 && (match_model(p->deny, p->n_deny, m).pattern ||
                                 match_origin(p->deny, p->n_deny, m).pattern)) {
        match x = match_model(p->deny, p->n_deny, m);
        if (!x.pattern)
            x = match_origin(p->deny, p->n_deny, m);
        set(d, false, "deny_families");
        const char *claim = m->claimed_family;
        snprintf(d->reason, sizeof d->reason, "%s %s matches deny_families \"%s\"%s%s%s", x.what,
                 x.subject, x.pattern, claim ? " (its config claims \"" : "", claim ? claim : "",
                 claim ? "\")" : "");
    } else if (m->blocked_parent) {
        /* Several parents: each one's lineage must be allowed, not only the main parent's. */
        set(d, false, "parents");
        snprintf(d->reason, sizeof d->reason, "one of its several parents is blocked: %s",
                 m->blocked_parent);
    } else if (m->status == POLICY_FAILED) {
        set(d, false, "failed");
        snprintf(d->reason, sizeof d->reason,
                 "analysis failed: a unit that cannot be analysed is unapproved");
    } else if ((m->status == POLICY_PENDING || m->status == POLICY_ANALYZING) && p->block_pending) {
        set(d, false, "block_pending");
        snprintf(d->reason, sizeof d->reason, "still %s (block_pending is true)",
                 m->status == POLICY_PENDING ? "pending analysis" : "being analysed");
    } else if (p->require == POLICY_REQUIRE_NEVER) {
        set(d, true, "require_approval");
        snprintf(d->reason, sizeof d->reason, "approval not required (require_approval is never)");
    } else if (p->require == POLICY_REQUIRE_ALWAYS) {
        set(d, false, "require_approval");
        snprintf(d->reason, sizeof d->reason, "not approved (require_approval is always)");
    } else {
        decide_lineage(p, m, d);
    }
    d->enforced = !d->allow && p->mode == POLICY_ENFORCE;
    d->logged = !d->allow && p->mode != POLICY_OFF;
}

const char *policy_decision_name(const policy_decision *d)
{
    return d->allow ? "allow" : "block";
}

const char *policy_event_decision(const policy_decision *d)
{
    if (!d->logged)
        return NULL;
    return d->enforced ? "refused" : "would-refuse";
}

cJSON *policy_decision_to_json(const policy_decision *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "decision", policy_decision_name(d)) ||
        !cJSON_AddStringToObject(o, "reason", d->reason) ||
        !cJSON_AddStringToObject(o, "rule", d->rule ? d->rule : "") ||
        !cJSON_AddStringToObject(o, "mode", policy_mode_name(d->mode)) ||
        !cJSON_AddBoolToObject(o, "enforced", d->enforced)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

bool policy_file_gated(const char *name)
{
    static const char *const open_names[] = {"config.json", "README.md",  "LICENSE",
                                             "LICENSE.txt", "LICENSE.md", "NOTICE",
                                             ".provenance"};
    if (!name)
        return true;
    for (size_t i = 0; i < sizeof open_names / sizeof *open_names; i++)
        if (strcmp(name, open_names[i]) == 0)
            return false;
    return true;
}

/* ---------------------------------------------------------------- approvals */


int policy_note_parse(const char *value, size_t len, char note[POLICY_NOTE_MAX + 1], char *err,
                      size_t errlen)
{
    note[0] = '\0';
    if (!value)
        len = 0;
    if (len > 0 && value[len - 1] == '\0')
        len--;
    if (len > 0 && value[len - 1] == '\n')
        len--;
    if (len > POLICY_NOTE_MAX) {
        snprintf(err, errlen, "note is %zu bytes (at most %d)", len, POLICY_NOTE_MAX);
        return -1;
    }
    const unsigned char *s = (const unsigned char *)value;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(err, errlen, "note contains a control character at byte %zu", i);
            return -1;
        }
        size_t k = pa_utf8_printable(s + i, len - i);
        if (k == 0) {
            snprintf(err, errlen, "note is not valid UTF-8 (byte %zu)", i);
            return -1;
        }
        i += k;
    }
    if (len)
        memcpy(note, value, len);
    note[len] = '\0';
    return 0;
}

static bool is_digest(const char *d)
{
    if (!d)
        return false;
    size_t i = 0;
    for (; d[i]; i++)
        if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
            return false;
    return i == 64;
}

bool policy_approval_binds(const char *approved_digest, const char *current_digest)
{
    return is_digest(approved_digest) && is_digest(current_digest) &&
           strcmp(approved_digest, current_digest) == 0;
}

const char *policy_approval_label(bool approved, const policy_decision *d)
{
    if (approved)
        return "approved";
    if (d && !d->allow)
        return d->enforced ? "blocked" : "unapproved";
    return "not-required";
}

cJSON *policy_approval_to_json(const char *label, const char *record_state, uint32_t by_uid,
                               int64_t at_unix, const char *note)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = cJSON_AddStringToObject(o, "state", label ? label : "not-required") != NULL;
    if (!record_state) {
        ok = ok && cJSON_AddNullToObject(o, "record");
    } else {
        cJSON *r = cJSON_AddObjectToObject(o, "record");
        char when[32] = "";
        time_t t = (time_t)at_unix;
        struct tm tm;
        if (at_unix > 0 && gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        ok = ok && r && cJSON_AddStringToObject(r, "state", record_state) &&
             cJSON_AddNumberToObject(r, "by_uid", (double)by_uid) &&
             (when[0] ? cJSON_AddStringToObject(r, "at", when) != NULL
                      : cJSON_AddNullToObject(r, "at") != NULL) &&
             cJSON_AddStringToObject(r, "note", note ? note : "");
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------- live reload */

struct policy_slot {
    pthread_mutex_t lock; /* protects current; held only to copy or swap the pointer */
    policy *current;
};

policy_slot *policy_slot_create(policy *initial)
{
    policy_slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->current = initial;
    return s;
}

policy *policy_slot_get(policy_slot *s)
{
    pthread_mutex_lock(&s->lock);
    policy *p = policy_ref(s->current);
    pthread_mutex_unlock(&s->lock);
    return p;
}

void policy_slot_set(policy_slot *s, policy *p)
{
    pthread_mutex_lock(&s->lock);
    policy *old = s->current;
    s->current = p;
    pthread_mutex_unlock(&s->lock);
    policy_unref(old); /* outside the lock: freeing is not the readers' business */
}

void policy_slot_destroy(policy_slot *s)
{
    if (!s)
        return;
    policy_unref(s->current);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int policy_slot_reload(policy_slot *s, const char *path, char *errbuf, size_t errlen)
{
    policy *p = NULL;
    if (policy_load(path, &p, errbuf, errlen) != 0)
        return -1;
    policy_slot_set(s, p);
    return 0;
}
