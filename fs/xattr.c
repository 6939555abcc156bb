/* user.provenance.* values from the store. */
#include "xattr.h"

#include "policy.h"
#include "provfs/analyzer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const xattr_names[] = {"status", "id",       "sha256", "parent", "parents",
                                          "score",  "verdict",  "family", "approval", "error",
                                          "unsafe"};
#define N_NAMES (sizeof xattr_names / sizeof xattr_names[0])

bool xattr_is_provenance(const char *name)
{
    return strncmp(name, XATTR_PREFIX, sizeof XATTR_PREFIX - 1) == 0;
}

/* What the store and the queue say about one directory or file. */
typedef struct xview {
    bool present;      /* the path belongs to a model unit (known or queued) */
    bool settled;      /* not pending or analyzing: stored values are current */
    bool have_model;
    store_model model;
    bool have_file_sha;
    char file_sha[65];
    const char *status;
} xview;

/* 0 and view filled; -EIO on store errors. */
static int view_load(store_handle *st, queue *q, const char *dir, const char *file, xview *v)
{
    memset(v, 0, sizeof *v);
    queue_state qs = q ? queue_get_state(q, dir) : QUEUE_NONE;
    int rc = store_model_by_path(st, dir, &v->model);
    if (rc < 0)
        return -EIO;
    v->have_model = rc == 0;
    if (!v->have_model && qs == QUEUE_NONE)
        return 0;
    v->present = true;
    v->settled = qs == QUEUE_NONE;
    if (qs == QUEUE_PENDING)
        v->status = "pending";
    else if (qs == QUEUE_ANALYZING)
        v->status = "analyzing";
    else
        v->status = v->model.status;
    /* dir names the file itself when the unit is a single file (GGUF, loose weights) */
    const char *last = strrchr(dir, '/');
    bool own_name = file && last && strcmp(last + 1, file) == 0;
    store_file *files = NULL;
    size_t n = 0;
    if (file && v->have_model && (strcmp(v->model.format, "gguf") == 0 || own_name) &&
        store_files(st, v->model.id, &files, &n) < 0)
        return -EIO;
    if (file && v->have_model && (strcmp(v->model.format, "gguf") == 0 || (own_name && n == 1))) {
        /* a single-file unit: its one file, whatever name this path gives it (the same content
         * at two paths is one model, listed under the name it was first seen with) */
        v->have_file_sha = n == 1;
        if (n == 1)
            snprintf(v->file_sha, sizeof v->file_sha, "%s", files[0].sha256);
        store_files_free(files, n);
    } else if (file && v->have_model) {
        store_files_free(files, n);
        rc = store_file_sha(st, v->model.id, file, v->file_sha);
        if (rc < 0)
            return -EIO;
        v->have_file_sha = rc == 0;
        /* A file the analysis did not list is not part of the unit once it is settled. */
        if (!v->have_file_sha && v->settled && strcmp(v->status, "ready") == 0)
            v->present = false;
    }
    return 0;
}

/* Writes the value of one short name into out; 0, -ENODATA or -EIO. */
static int value_of(store_handle *st, gate *g, const xview *v, const char *dir,
                    const char *file, const char *name, char *out, size_t outlen)
{
    bool ready = v->settled && v->have_model && strcmp(v->model.status, "ready") == 0;
    if (strcmp(name, "status") == 0) {
        snprintf(out, outlen, "%s", v->status);
        return 0;
    }
    if (strcmp(name, "id") == 0) {
        if (!v->have_model)
            return -ENODATA;
        snprintf(out, outlen, "%" PRIx64, (uint64_t)v->model.id);
        return 0;
    }
    if (strcmp(name, "approval") == 0) {
        gate_verdict gv;
        if (!g || gate_unit(g, dir, &gv) != 0 || !gv.unit)
            snprintf(out, outlen, "not-required");
        else
            snprintf(out, outlen, "%s", policy_approval_label(gv.approved, &gv.decision));
        return 0;
    }
    if (strcmp(name, "error") == 0) {
        if (!v->settled || !v->have_model || strcmp(v->model.status, "failed") != 0 ||
            !v->model.error)
            return -ENODATA;
        snprintf(out, outlen, "%s", v->model.error);
        return 0;
    }
    if (strcmp(name, "unsafe") == 0) {
        /* the global an unsafe pickle imports; absent (and not listed) otherwise */
        if (!v->settled || !v->have_model || strcmp(v->model.status, "failed") != 0 ||
            !pa_unsafe_global(v->model.error, out, outlen))
            return -ENODATA;
        return 0;
    }
    if (!ready)
        return -ENODATA;
    if (strcmp(name, "sha256") == 0) {
        if (file && !v->have_file_sha)
            return -ENODATA;
        snprintf(out, outlen, "%s", file ? v->file_sha : v->model.digest);
        return 0;
    }
    if (strcmp(name, "parents") == 0) {
        /* every parent's path, the main parent first, one a line; absent without parents */
        store_link *links = NULL;
        size_t n = 0, len = 0;
        if (store_parents(st, v->model.id, &links, &n) != 0)
            return -EIO;
        int ret = 0;
        out[0] = '\0';
        for (size_t i = 0; i < n && ret == 0; i++) {
            if (!links[i].path)
                continue;
            int w = snprintf(out + len, outlen - len, "%s%s", len ? "\n" : "", links[i].path);
            if (w < 0 || (size_t)w >= outlen - len)
                ret = -ERANGE;
            else
                len += (size_t)w;
        }
        store_links_free(links, n);
        return ret == 0 && len == 0 ? -ENODATA : ret;
    }
    store_link parent;
    int rc = store_parent(st, v->model.id, &parent);
    if (rc < 0)
        return -EIO;
    /* Without a parent in the store, a reference-set parent (ref:NAME) stands in; a hint never
     * does. */
    store_ref ref;
    bool have_ref = false;
    if (rc == 1 && strcmp(name, "family") != 0) {
        int rr = store_ref_get(st, v->model.id, &ref);
        if (rr < 0)
            return -EIO;
        have_ref = rr == 0 && ref.is_parent;
        if (rr == 0 && !have_ref)
            store_ref_clear(&ref);
    }
    int ret = 0;
    if (strcmp(name, "parent") == 0) {
        if (have_ref)
            snprintf(out, outlen, "ref:%s", ref.name);
        else if (rc == 1 || !parent.path)
            ret = -ENODATA;
        else
            snprintf(out, outlen, "%s", parent.path);
    } else if (strcmp(name, "score") == 0) {
        if (have_ref)
            snprintf(out, outlen, "%.4f", ref.score);
        else if (rc == 1)
            ret = -ENODATA;
        else
            snprintf(out, outlen, "%.4f", parent.score);
    } else if (strcmp(name, "verdict") == 0) {
        snprintf(out, outlen, "%s", have_ref ? ref.verdict : rc == 1 ? "none" : parent.verdict);
    } else if (strcmp(name, "family") == 0) {
        /* The root ancestor's path, or the family of the reference entry it descends from. */
        int64_t root_id = v->model.id;
        char *root_path = NULL;
        if (rc == 0) {
            store_link *anc = NULL;
            size_t n = 0;
            if (store_ancestors(st, v->model.id, &anc, &n) != 0 || n == 0 || !anc[n - 1].path)
                ret = -ENODATA;
            else if (!(root_path = strdup(anc[n - 1].path)))
                ret = -ENOMEM;
            if (n > 0)
                root_id = anc[n - 1].id;
            store_links_free(anc, n);
        }
        store_ref root_ref;
        int rr = ret == 0 ? store_ref_get(st, root_id, &root_ref) : 1;
        if (rr == 0 && root_ref.is_parent)
            snprintf(out, outlen, "%s", root_ref.family);
        else if (ret == 0)
            snprintf(out, outlen, "%s", root_path ? root_path : dir);
        if (rr == 0)
            store_ref_clear(&root_ref);
        free(root_path);
    } else {
        ret = -ENODATA;
    }
    if (rc == 0) {
        store_link_clear(&parent);
    }
    if (have_ref)
        store_ref_clear(&ref);
    return ret;
}

int xattr_get(store_handle *st, queue *q, gate *g, const char *dir, const char *file,
              const char *name, char *buf, size_t size)
{
    if (!xattr_is_provenance(name))
        return -ENODATA;
    const char *short_name = name + sizeof XATTR_PREFIX - 1;
    xview v;
    int ret = view_load(st, q, dir, file, &v);
    if (ret == 0 && !v.present)
        ret = -ENODATA;
    char value[16384];
    if (ret == 0)
        ret = value_of(st, g, &v, dir, file, short_name, value, sizeof value);
    store_model_clear(&v.model);
    if (ret < 0)
        return ret;
    size_t len = strlen(value);
    if (size == 0)
        return (int)len;
    if (len > size)
        return -ERANGE;
    memcpy(buf, value, len);
    return (int)len;
}

int xattr_list(store_handle *st, queue *q, gate *g, const char *dir, const char *file, char *buf,
               size_t size)
{
    xview v;
    int ret = view_load(st, q, dir, file, &v);
    if (ret < 0 || !v.present) {
        store_model_clear(&v.model);
        return ret < 0 ? ret : 0;
    }
    size_t len = 0;
    char value[16384];
    for (size_t i = 0; i < N_NAMES; i++) {
        if (value_of(st, g, &v, dir, file, xattr_names[i], value, sizeof value) != 0)
            continue;
        size_t n = sizeof XATTR_PREFIX - 1 + strlen(xattr_names[i]) + 1;
        if (size > 0) {
            if (len + n > size) {
                store_model_clear(&v.model);
                return -ERANGE;
            }
            snprintf(buf + len, n, "%s%s", XATTR_PREFIX, xattr_names[i]);
        }
        len += n;
    }
    store_model_clear(&v.model);
    return (int)len;
}

int xattr_set(store_handle *st, queue *q, const char *dir, const char *file, const char *name,
              const char *value, size_t size, bool admin, uint32_t uid, int32_t pid)
{
    const char *short_name = name + sizeof XATTR_PREFIX - 1;
    bool approve = strcmp(short_name, "approve") == 0;
    if (!approve && strcmp(short_name, "revoke") != 0)
        return -EPERM;
    if (!admin)
        return -EPERM;
    xview v;
    int ret = view_load(st, q, dir, file, &v);
    if (ret == 0 && !v.present)
        ret = -ENODATA;
    /* Approval belongs to content: no digest yet, nothing to bind it to. */
    if (ret == 0 && (!v.settled || !v.have_model || strlen(v.model.digest) != 64))
        ret = -EBUSY;
    char note[POLICY_NOTE_MAX + 1], why[128];
    if (ret == 0 && policy_note_parse(value, size, note, why, sizeof why) != 0)
        ret = -EINVAL;
    if (ret == 0 && store_approval_set(st, v.model.digest, approve ? "approved" : "revoked", uid,
                                       pid, dir, v.model.id, note) != 0)
        ret = -EIO;
    store_model_clear(&v.model);
    return ret;
}
