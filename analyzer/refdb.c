/* Reference sets: entry files, loading a reference directory, importing Cisco's Model Provenance
 * Kit database, adding local models.
 *
 * Everything read here is data from disk (possibly from someone else): entry files and MPK records
 * are type-checked field by field, paths taken from a catalog must stay inside its directory, and
 * every refusal names the file and the field.
 */
#include "refdb.h"
#include "fp.h"
#include "jsonutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MPK_MAX_FILE (16u * 1024u * 1024u) /* a catalog shard or features record */
#define PATH_CAP 4096

struct pa_refdb {
    size_t n, cap;
    pa_refentry *entries;
};

/* ------------------------------------------------------------------ small helpers */

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    size_t n = la;
    if (n && p[n - 1] != '/')
        p[n++] = '/';
    memcpy(p + n, b, lb + 1);
    return p;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* mkdir -p */
static pa_status make_dirs(const char *path, pa_error *err)
{
    char buf[PATH_CAP];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return pa_error_set(err, PA_E_ARG, "%s: bad directory name", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return pa_error_set(err, PA_E_IO, "%s: cannot create directory: %s", buf,
                                strerror(errno));
        buf[i] = saved;
    }
    if (!is_dir(path))
        return pa_error_set(err, PA_E_IO, "%s: not a directory", path);
    return PA_OK;
}

/* Write bytes to path through a temporary file in the same directory and rename(2). */
static pa_status write_atomic(const char *dir, const char *file, const char *data, size_t len,
                              pa_error *err)
{
    char tmp[PATH_CAP], dst[PATH_CAP];
    int nt = snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, file, (long)getpid());
    int nd = snprintf(dst, sizeof dst, "%s/%s", dir, file);
    if (nt < 0 || nd < 0 || (size_t)nt >= sizeof tmp || (size_t)nd >= sizeof dst)
        return pa_error_set(err, PA_E_ARG, "%s/%s: path too long", dir, file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return pa_error_set(err, PA_E_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        done += (size_t)w;
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return pa_error_set(err, PA_E_IO, "%s: close failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return pa_error_set(err, PA_E_IO, "%s: cannot rename into place: %s", dst, strerror(e));
    }
    return PA_OK;
}

/* A name, family or source: non-empty, bounded, valid-looking text without control bytes. */
static bool good_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PA_REFDB_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

void pa_refdb_safe_name(const char *name, char out[201])
{
    size_t n = 0;
    for (const char *p = name; *p && n < 200; p++) {
        char c = *p;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || (c == '.' && n > 0);
        out[n++] = keep ? c : '_';
    }
    if (n == 0)
        out[n++] = '_';
    out[n] = '\0';
}

/* The entry file name of a name: its safe form, plus a short hash of the name whenever the safe
 * form changed it, so two distinct names never share a file. */
static void entry_file_name(const char *name, char out[256])
{
    char safe[201];
    pa_refdb_safe_name(name, safe);
    if (strcmp(safe, name) == 0) {
        snprintf(out, 256, "%s.json", safe);
    } else {
        char h[65];
        pa_sha256_hex(name, strlen(name), h);
        snprintf(out, 256, "%s-%.8s.json", safe, h);
    }
}

/* ------------------------------------------------------------------ entry files */

void pa_refentry_clear(pa_refentry *e)
{
    if (!e)
        return;
    free(e->name);
    free(e->family);
    free(e->source);
    free(e->file);
    pa_fingerprint_free(e->fp);
    memset(e, 0, sizeof *e);
}

pa_status pa_refentry_parse(const char *json, size_t len, const char *label, pa_refentry *out,
                            pa_error *err)
{
    memset(out, 0, sizeof *out);
    if (!label)
        label = "reference entry";
    cJSON *o = pa_json_parse(json, len, label, err);
    if (!o)
        return err->status;
    pa_status st = PA_OK;
    const char *schema = pa_json_str(o, "schema");
    const char *name = pa_json_str(o, "name");
    const char *family = pa_json_str(o, "family");
    const char *source = pa_json_str(o, "source");
    const cJSON *fpo = cJSON_GetObjectItemCaseSensitive(o, "fingerprint");
    char *fptext = NULL;
    if (!cJSON_IsObject(o) || !schema || strcmp(schema, PA_REFENTRY_SCHEMA) != 0) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: not a %s entry", label, PA_REFENTRY_SCHEMA);
        goto out;
    }
    if (!good_label(name) || !good_label(family) || !good_label(source)) {
        st = pa_error_set(err, PA_E_FORMAT,
                          "%s: name, family and source must be strings of 1..%d printable bytes",
                          label, PA_REFDB_MAX_NAME);
        goto out;
    }
    if (!cJSON_IsObject(fpo)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: no fingerprint object", label);
        goto out;
    }
    fptext = cJSON_PrintUnformatted(fpo);
    out->name = strdup(name);
    out->family = strdup(family);
    out->source = strdup(source);
    out->file = strdup(label);
    if (!fptext || !out->name || !out->family || !out->source || !out->file) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        goto out;
    }
    st = pa_fp_from_json(fptext, strlen(fptext), label, &out->fp, err);
out:
    free(fptext);
    cJSON_Delete(o);
    if (st != PA_OK)
        pa_refentry_clear(out);
    return st;
}

pa_status pa_refentry_read(const char *path, pa_refentry *out, pa_error *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    if (pa_read_file(path, PA_REFENTRY_MAX_FILE, &text, &len, err) != PA_OK)
        return err->status;
    pa_status st = pa_refentry_parse(text, len, path, out, err);
    free(text);
    return st;
}

pa_status pa_refdb_write_entry(const char *out_dir, const char *name, const char *family,
                               const char *source, const pa_fingerprint *fp, char **path_out,
                               pa_error *err)
{
    if (path_out)
        *path_out = NULL;
    if (!out_dir || !fp)
        return pa_error_set(err, PA_E_ARG, "refdb: no output directory or fingerprint");
    if (!good_label(name) || !good_label(family) || !good_label(source))
        return pa_error_set(err, PA_E_ARG,
                            "%s: name, family and source must be 1..%d printable bytes", out_dir,
                            PA_REFDB_MAX_NAME);
    char *entries = path_join(out_dir, "entries");
    char *fptext = pa_fp_to_json(fp, false);
    cJSON *o = cJSON_CreateObject();
    cJSON *fpo = fptext ? cJSON_Parse(fptext) : NULL;
    char *text = NULL;
    pa_status st = PA_OK;
    if (!entries || !fptext || !o || !fpo) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", out_dir);
        goto out;
    }
    cJSON_AddStringToObject(o, "schema", PA_REFENTRY_SCHEMA);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "family", family);
    cJSON_AddStringToObject(o, "source", source);
    pa_json_add(o, "fingerprint", fpo);
    fpo = NULL;
    text = cJSON_Print(o);
    if (!text) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", out_dir);
        goto out;
    }
    size_t tl = strlen(text);
    char *nl = realloc(text, tl + 2);
    if (!nl) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", out_dir);
        goto out;
    }
    text = nl;
    text[tl++] = '\n';
    text[tl] = '\0';
    if ((st = make_dirs(entries, err)) != PA_OK)
        goto out;
    char file[256];
    entry_file_name(name, file);
    if ((st = write_atomic(entries, file, text, tl, err)) != PA_OK)
        goto out;
    if (path_out && !(*path_out = path_join(entries, file)))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", out_dir);
out:
    cJSON_Delete(fpo);
    cJSON_Delete(o);
    free(text);
    free(fptext);
    free(entries);
    return st;
}

/* ------------------------------------------------------------------ loading */

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir that pass keep(); hidden names are skipped. */
static pa_status list_dir(const char *dir, bool (*keep)(const char *dir, const char *name),
                          char ***out, size_t *n_out, pa_error *err)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d)
        return pa_error_set(err, PA_E_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    pa_status st = PA_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || !keep(dir, de->d_name))
            continue;
        if (n >= PA_REFDB_MAX_ENTRIES) {
            st = pa_error_set(err, PA_E_LIMIT, "%s: more than %u entries", dir,
                              PA_REFDB_MAX_ENTRIES);
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **p = realloc(names, nc * sizeof *p);
            if (!p) {
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", dir);
                break;
            }
            names = p;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name))) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (st != PA_OK) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return st;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_cstr);
    *out = names;
    *n_out = n;
    return PA_OK;
}

static bool keep_json(const char *dir, const char *name)
{
    (void)dir;
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

static bool keep_set(const char *dir, const char *name)
{
    char path[PATH_CAP];
    int n = snprintf(path, sizeof path, "%s/%s/entries", dir, name);
    return n > 0 && (size_t)n < sizeof path && is_dir(path);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static pa_status load_entries(pa_refdb *db, const char *entries_dir, pa_error *err)
{
    char **names;
    size_t n;
    if (list_dir(entries_dir, keep_json, &names, &n, err) != PA_OK)
        return err->status;
    pa_status st = PA_OK;
    for (size_t i = 0; i < n && st == PA_OK; i++) {
        if (db->n >= PA_REFDB_MAX_ENTRIES) {
            st = pa_error_set(err, PA_E_LIMIT, "%s: more than %u reference entries", entries_dir,
                              PA_REFDB_MAX_ENTRIES);
            break;
        }
        if (db->n == db->cap) {
            size_t nc = db->cap ? db->cap * 2 : 64;
            pa_refentry *p = realloc(db->entries, nc * sizeof *p);
            if (!p) {
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", entries_dir);
                break;
            }
            db->entries = p;
            db->cap = nc;
        }
        char *path = path_join(entries_dir, names[i]);
        if (!path) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", entries_dir);
            break;
        }
        st = pa_refentry_read(path, &db->entries[db->n], err);
        free(path);
        if (st == PA_OK)
            db->n++;
    }
    free_names(names, n);
    return st;
}

pa_status pa_refdb_load(const char *dir, pa_refdb **out, pa_error *err)
{
    *out = NULL;
    if (!dir)
        return pa_error_set(err, PA_E_ARG, "refdb: no directory");
    struct stat st_dir;
    if (stat(dir, &st_dir) != 0)
        return pa_error_set(err, PA_E_IO, "%s: cannot open reference directory: %s", dir,
                            strerror(errno));
    if (!S_ISDIR(st_dir.st_mode))
        return pa_error_set(err, PA_E_IO, "%s: not a directory", dir);
    pa_refdb *db = calloc(1, sizeof *db);
    if (!db)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", dir);
    pa_status st = PA_OK;
    char *own = path_join(dir, "entries");
    if (!own)
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", dir);
    else if (is_dir(own))
        st = load_entries(db, own, err);
    free(own);
    char **sets = NULL;
    size_t n_sets = 0;
    if (st == PA_OK)
        st = list_dir(dir, keep_set, &sets, &n_sets, err);
    for (size_t i = 0; i < n_sets && st == PA_OK; i++) {
        char path[PATH_CAP];
        int n = snprintf(path, sizeof path, "%s/%s/entries", dir, sets[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            st = pa_error_set(err, PA_E_ARG, "%s/%s: path too long", dir, sets[i]);
        else
            st = load_entries(db, path, err);
    }
    free_names(sets, n_sets);
    if (st != PA_OK) {
        pa_refdb_free(db);
        return st;
    }
    *out = db;
    return PA_OK;
}

void pa_refdb_free(pa_refdb *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        pa_refentry_clear(&db->entries[i]);
    free(db->entries);
    free(db);
}

size_t pa_refdb_count(const pa_refdb *db)
{
    return db ? db->n : 0;
}

const pa_refentry *pa_refdb_entry(const pa_refdb *db, size_t i)
{
    return db && i < db->n ? &db->entries[i] : NULL;
}

const char *pa_refdb_name(const pa_refdb *db, size_t i)
{
    const pa_refentry *e = pa_refdb_entry(db, i);
    return e ? e->name : NULL;
}

const char *pa_refdb_family(const pa_refdb *db, size_t i)
{
    const pa_refentry *e = pa_refdb_entry(db, i);
    return e ? e->family : NULL;
}

const char *pa_refdb_source(const pa_refdb *db, size_t i)
{
    const pa_refentry *e = pa_refdb_entry(db, i);
    return e ? e->source : NULL;
}

const pa_fingerprint *pa_refdb_fingerprint(const pa_refdb *db, size_t i)
{
    const pa_refentry *e = pa_refdb_entry(db, i);
    return e ? e->fp : NULL;
}

/* ------------------------------------------------------------------ MPK records */

/* Field copying from an MPK record into a provfs.fingerprint/1 object, with type checks. Each
 * returns false after recording an error that names the file and the field. */
typedef struct conv {
    const char *label;
    const char *section; /* "mfi" or "tfv" */
    pa_error *err;
} conv;

static bool conv_bad(conv *c, const char *key, const char *want)
{
    pa_error_set(c->err, PA_E_FORMAT, "%s: %s.%s: expected %s", c->label, c->section, key, want);
    return false;
}

static bool is_int_value(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
           v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) <= 9007199254740992.0;
}

static bool put(cJSON *dst, const char *key, cJSON *item)
{
    return pa_json_add(dst, key, item);
}

/* integer or null (absent = null); min bounds the value */
static bool copy_int(conv *c, cJSON *dst, const cJSON *src, const char *key, double min)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (!v || cJSON_IsNull(v))
        return put(dst, key, cJSON_CreateNull());
    if (!is_int_value(v) || v->valuedouble < min)
        return conv_bad(c, key, min >= 0 ? "a non-negative integer or null" : "an integer or null");
    return put(dst, key, cJSON_CreateNumber(v->valuedouble));
}

/* required integer >= 0 */
static bool copy_count(conv *c, cJSON *dst, const cJSON *src, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (!is_int_value(v) || v->valuedouble < 0)
        return conv_bad(c, key, "a non-negative integer");
    return put(dst, key, cJSON_CreateNumber(v->valuedouble));
}

static bool copy_str(conv *c, cJSON *dst, const cJSON *src, const char *key, size_t max,
                     bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (nullable && (!v || cJSON_IsNull(v)))
        return put(dst, key, cJSON_CreateNull());
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max)
        return conv_bad(c, key, nullable ? "a short string or null" : "a short string");
    return put(dst, key, cJSON_CreateString(v->valuestring));
}

static bool copy_bool(conv *c, cJSON *dst, const cJSON *src, const char *key, bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (nullable && (!v || cJSON_IsNull(v)))
        return put(dst, key, cJSON_CreateNull());
    if (!cJSON_IsBool(v))
        return conv_bad(c, key, nullable ? "true, false or null" : "true or false");
    return put(dst, key, cJSON_CreateBool(cJSON_IsTrue(v)));
}

/* finite number in [lo, hi], or null when nullable */
static bool copy_num(conv *c, cJSON *dst, const cJSON *src, const char *key, double lo, double hi,
                     bool nullable)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, key);
    if (nullable && (!v || cJSON_IsNull(v)))
        return put(dst, key, cJSON_CreateNull());
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return conv_bad(c, key, "a number in range");
    return put(dst, key, cJSON_CreateNumber(v->valuedouble));
}

static bool is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool copy_hash(conv *c, cJSON *dst, const cJSON *src, const char *key, bool may_be_empty)
{
    const char *s = pa_json_str(src, key);
    if (!s || (!is_hex64(s) && !(may_be_empty && !*s)))
        return conv_bad(c, key, "a lowercase hex SHA-256");
    return put(dst, key, cJSON_CreateString(s));
}

static cJSON *mpk_mfi(const cJSON *m, const char *label, pa_error *err)
{
    conv c = {label, "mfi", err};
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = copy_str(&c, o, m, "model_type", 128, true);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(m, "architectures");
    if (ok && arch && !cJSON_IsNull(arch)) {
        bool good = cJSON_IsArray(arch) && cJSON_GetArraySize(arch) <= 64;
        for (const cJSON *x = good ? arch->child : NULL; x; x = x->next)
            good = good && cJSON_IsString(x) && strlen(x->valuestring) <= 256;
        ok = good ? put(o, "architectures", cJSON_Duplicate(arch, true))
                  : conv_bad(&c, "architectures", "a list of class names or null");
    } else if (ok) {
        ok = put(o, "architectures", cJSON_CreateNull());
    }
    static const char *const ints[] = {
        "hidden_size",       "num_hidden_layers", "num_attention_heads",     "num_key_value_heads",
        "intermediate_size", "vocab_size",        "max_position_embeddings", "head_dim"};
    for (size_t i = 0; ok && i < sizeof ints / sizeof *ints; i++)
        ok = copy_int(&c, o, m, ints[i], 0);
    ok = ok && copy_int(&c, o, m, "bos_token_id", -1e15) &&
         copy_int(&c, o, m, "eos_token_id", -1e15);
    ok = ok && copy_str(&c, o, m, "hidden_act", 128, true);
    ok = ok && copy_num(&c, o, m, "rope_theta", 0, 1e300, true);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(m, "rope_scaling");
    if (ok && rs && !cJSON_IsNull(rs))
        ok = cJSON_IsObject(rs) ? put(o, "rope_scaling", cJSON_Duplicate(rs, true))
                                : conv_bad(&c, "rope_scaling", "an object or null");
    else if (ok)
        ok = put(o, "rope_scaling", cJSON_CreateNull());
    ok = ok && copy_bool(&c, o, m, "tie_word_embeddings", true);
    ok = ok && copy_num(&c, o, m, "gqa_ratio", 0, 1e6, false);
    ok = ok && copy_str(&c, o, m, "attention_style", 3, false);
    ok = ok && copy_str(&c, o, m, "norm_type", 15, false);
    ok = ok && copy_bool(&c, o, m, "attention_bias", true);
    ok = ok && copy_bool(&c, o, m, "qk_norm", false);
    ok = ok && copy_str(&c, o, m, "pos_encoding", 31, false);
    ok = ok && copy_hash(&c, o, m, "tokenizer_hash", false);
    ok = ok && copy_hash(&c, o, m, "arch_hash", false);
    ok = ok && copy_hash(&c, o, m, "family_hash", false);
    if (!ok) {
        if (!err->status)
            pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *mpk_tfv(const cJSON *t, const char *label, pa_error *err)
{
    conv c = {label, "tfv", err};
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = copy_count(&c, o, t, "vocab_size") && copy_count(&c, o, t, "num_merges") &&
              copy_hash(&c, o, t, "merge_rule_hash", true) &&
              copy_num(&c, o, t, "pct_single_char", 0, 1, false) &&
              copy_num(&c, o, t, "avg_token_length", 0, 1e9, false) &&
              copy_count(&c, o, t, "max_token_length") &&
              copy_num(&c, o, t, "pct_whitespace_prefix", 0, 1, false) &&
              copy_num(&c, o, t, "pct_byte_tokens", 0, 1, false);
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(t, "script_distribution");
    if (ok && !cJSON_IsObject(sd))
        ok = conv_bad(&c, "script_distribution", "an object");
    if (ok) {
        cJSON *dst = cJSON_AddObjectToObject(o, "script_distribution");
        ok = dst != NULL;
        for (const cJSON *x = sd->child; ok && x; x = x->next) {
            int k = 0;
            while (k < PA_SCRIPT_COUNT && strcmp(pa_script_names[k], x->string) != 0)
                k++;
            if (k == PA_SCRIPT_COUNT || !cJSON_IsNumber(x) || !(x->valuedouble >= 0) ||
                !(x->valuedouble <= 1))
                ok = conv_bad(&c, "script_distribution",
                              "fractions of Latin, CJK, Cyrillic, Arabic, Devanagari, Other");
            else
                ok = put(dst, x->string, cJSON_CreateNumber(x->valuedouble));
        }
    }
    /* tokenizer_class may be null in a record; the fingerprint keeps "" then */
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(t, "tokenizer_class");
    if (ok && cls && !cJSON_IsNull(cls) && (!cJSON_IsString(cls) || strlen(cls->valuestring) > 63))
        ok = conv_bad(&c, "tokenizer_class", "a class name or null");
    if (ok)
        ok = put(o, "tokenizer_class",
                 cJSON_CreateString(cJSON_IsString(cls) ? cls->valuestring : ""));
    ok = ok && put(o, "model_kind", cJSON_CreateString(""));
    ok = ok && copy_int(&c, o, t, "bos_token_id", -1e15) &&
         copy_int(&c, o, t, "eos_token_id", -1e15) && copy_int(&c, o, t, "pad_token_id", -1e15);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(t, "special_token_ids");
    if (ok && sp && !cJSON_IsNull(sp) && !cJSON_IsObject(sp))
        ok = conv_bad(&c, "special_token_ids", "an object or null");
    if (ok) {
        /* copy_int writes under the source key; the fingerprint wants unk_token_id, mask_token_id
         */
        cJSON *tmp = cJSON_CreateObject();
        c.section = "tfv.special_token_ids";
        ok = tmp && copy_int(&c, tmp, cJSON_IsObject(sp) ? sp : NULL, "unk", -1e15) &&
             copy_int(&c, tmp, cJSON_IsObject(sp) ? sp : NULL, "mask", -1e15);
        if (ok) {
            cJSON *u = cJSON_DetachItemFromObjectCaseSensitive(tmp, "unk");
            cJSON *k = cJSON_DetachItemFromObjectCaseSensitive(tmp, "mask");
            ok = put(o, "unk_token_id", u) && put(o, "mask_token_id", k);
        }
        cJSON_Delete(tmp);
    }
    ok = ok && put(o, "merges_hash", cJSON_CreateString(""));
    if (!ok) {
        if (!err->status)
            pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool id_string(const cJSON *rec, const char *key, char **out)
{
    const char *s = pa_json_str(rec, key);
    if (!good_label(s))
        return false;
    *out = strdup(s);
    return *out != NULL;
}

pa_status pa_refdb_mpk_record(const char *json, size_t len, const char *label, pa_fingerprint **out,
                              char **model_id, char **family_id, char **asset_id, pa_error *err)
{
    *out = NULL;
    *model_id = *family_id = *asset_id = NULL;
    if (!label)
        label = "MPK record";
    cJSON *rec = pa_json_parse(json, len, label, err);
    if (!rec)
        return err->status;
    pa_status st = PA_OK;
    cJSON *fpo = NULL;
    char *text = NULL;
    if (!cJSON_IsObject(rec)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: a features record must be a JSON object", label);
        goto out;
    }
    if (!id_string(rec, "model_id", model_id) || !id_string(rec, "family_id", family_id) ||
        !id_string(rec, "asset_id", asset_id)) {
        st = pa_error_set(err, PA_E_FORMAT,
                          "%s: model_id, family_id and asset_id must be strings of 1..%d bytes",
                          label, PA_REFDB_MAX_NAME);
        goto out;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "mfi");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, "tfv");
    if (!cJSON_IsObject(m)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: no mfi object", label);
        goto out;
    }
    if (t && !cJSON_IsNull(t) && !cJSON_IsObject(t)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: tfv must be an object or null", label);
        goto out;
    }
    cJSON *mfi = mpk_mfi(m, label, err);
    cJSON *tfv = cJSON_IsObject(t) ? mpk_tfv(t, label, err) : cJSON_CreateNull();
    fpo = cJSON_CreateObject();
    if (!mfi || !tfv || !fpo) {
        cJSON_Delete(mfi);
        cJSON_Delete(tfv);
        st = err->status ? err->status : pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        goto out;
    }
    char source[PA_REFDB_MAX_NAME + 16];
    snprintf(source, sizeof source, "cisco-mpk:%s", *asset_id);
    cJSON_AddStringToObject(fpo, "schema", "provfs.fingerprint/1");
    cJSON_AddStringToObject(fpo, "path", source);
    cJSON_AddStringToObject(fpo, "format", "reference-metadata");
    cJSON_AddStringToObject(fpo, "digest", "");
    cJSON_AddArrayToObject(fpo, "files");
    pa_json_add(fpo, "mfi", mfi);
    pa_json_add(fpo, "tokenizer", tfv);
    cJSON_AddNullToObject(fpo, "vocab");
    cJSON_AddNullToObject(fpo, "weights");
    text = cJSON_PrintUnformatted(fpo);
    if (!text) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        goto out;
    }
    st = pa_fp_from_json(text, strlen(text), label, out, err);
out:
    free(text);
    cJSON_Delete(fpo);
    cJSON_Delete(rec);
    if (st != PA_OK) {
        free(*model_id);
        free(*family_id);
        free(*asset_id);
        *model_id = *family_id = *asset_id = NULL;
    }
    return st;
}

/* A path from a catalog: relative, no "..", no empty components, bounded. */
static bool safe_rel_path(const char *p)
{
    if (!p || !*p || p[0] == '/' || strlen(p) > 1024)
        return false;
    const char *s = p;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] < 0x20)
                return false;
        s += n;
        if (*s == '/')
            s++;
    }
    return p[strlen(p) - 1] != '/';
}

static cJSON *read_json(const char *path, pa_error *err)
{
    char *text = NULL;
    size_t len = 0;
    if (pa_read_file(path, MPK_MAX_FILE, &text, &len, err) != PA_OK)
        return NULL;
    cJSON *o = pa_json_parse(text, len, path, err);
    free(text);
    return o;
}

static pa_status copy_file(const char *src, const char *dst, pa_error *err)
{
    char *text = NULL;
    size_t len = 0;
    if (pa_read_file(src, MPK_MAX_FILE, &text, &len, err) != PA_OK)
        return err->status;
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s", dst);
    char *slash = strrchr(dir, '/');
    const char *base = dst;
    if (slash) {
        *slash = '\0';
        base = slash + 1;
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    pa_status st = write_atomic(dir, base, text, len, err);
    free(text);
    return st;
}

/* One catalog asset: read its features record and write the entry. */
static pa_status import_asset(const char *mpk_dir, const char *out_dir, const char *shard_path,
                              const char *shard_family, const cJSON *asset, pa_error *err)
{
    const char *fpath = pa_json_str(asset, "feature_path");
    const char *cat_model = pa_json_str(asset, "model_id");
    const char *cat_asset = pa_json_str(asset, "asset_id");
    if (!cJSON_IsObject(asset) || !safe_rel_path(fpath) || !good_label(cat_model) ||
        !good_label(cat_asset))
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: an asset needs model_id, asset_id and a relative feature_path "
                            "inside the database",
                            shard_path);
    char *path = path_join(mpk_dir, fpath);
    if (!path)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", shard_path);
    char *text = NULL, *model_id = NULL, *family_id = NULL, *asset_id = NULL;
    size_t len = 0;
    pa_fingerprint *fp = NULL;
    pa_status st = pa_read_file(path, MPK_MAX_FILE, &text, &len, err);
    if (st == PA_OK)
        st = pa_refdb_mpk_record(text, len, path, &fp, &model_id, &family_id, &asset_id, err);
    if (st == PA_OK && (strcmp(model_id, cat_model) != 0 || strcmp(asset_id, cat_asset) != 0 ||
                        strcmp(family_id, shard_family) != 0))
        st = pa_error_set(err, PA_E_FORMAT,
                          "%s: record (%s, %s, %s) does not match its catalog entry in %s", path,
                          model_id, asset_id, family_id, shard_path);
    if (st == PA_OK) {
        char source[PA_REFDB_MAX_NAME + 16];
        snprintf(source, sizeof source, "cisco-mpk:%s", asset_id);
        st = pa_refdb_write_entry(out_dir, model_id, family_id, source, fp, NULL, err);
    }
    pa_fingerprint_free(fp);
    free(text);
    free(model_id);
    free(family_id);
    free(asset_id);
    free(path);
    return st;
}

pa_status pa_refdb_import_mpk(const char *mpk_dir, const char *out_dir, size_t *n_imported,
                              pa_error *err)
{
    if (n_imported)
        *n_imported = 0;
    if (!mpk_dir || !out_dir)
        return pa_error_set(err, PA_E_ARG, "import-mpk: no database or output directory");
    if (make_dirs(out_dir, err) != PA_OK)
        return err->status;
    char *manifest_path = path_join(mpk_dir, "catalog/manifest.json");
    if (!manifest_path)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", mpk_dir);
    cJSON *manifest = read_json(manifest_path, err);
    pa_status st = manifest ? PA_OK : err->status;
    const cJSON *shards = manifest ? cJSON_GetObjectItemCaseSensitive(manifest, "shards") : NULL;
    if (st == PA_OK && !cJSON_IsArray(shards))
        st = pa_error_set(err, PA_E_FORMAT, "%s: no shards list", manifest_path);
    size_t count = 0;
    for (const cJSON *s = st == PA_OK ? shards->child : NULL; s && st == PA_OK; s = s->next) {
        const char *sp = pa_json_str(s, "shard_path");
        const char *fam = pa_json_str(s, "family_id");
        if (!safe_rel_path(sp) || !good_label(fam)) {
            st = pa_error_set(err, PA_E_FORMAT,
                              "%s: a shard needs family_id and a relative shard_path inside the "
                              "database",
                              manifest_path);
            break;
        }
        char *shard_path = path_join(mpk_dir, sp);
        cJSON *shard = shard_path ? read_json(shard_path, err) : NULL;
        if (!shard_path)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", mpk_dir);
        else if (!shard)
            st = err->status;
        const cJSON *family = shard ? cJSON_GetObjectItemCaseSensitive(shard, "family") : NULL;
        const char *shard_fam = pa_json_str(family, "family_id");
        const cJSON *assets = shard ? cJSON_GetObjectItemCaseSensitive(shard, "assets") : NULL;
        if (st == PA_OK && (!shard_fam || strcmp(shard_fam, fam) != 0 || !cJSON_IsArray(assets)))
            st = pa_error_set(err, PA_E_FORMAT,
                              "%s: expected family.family_id \"%s\" and an assets list", shard_path,
                              fam);
        for (const cJSON *a = st == PA_OK ? assets->child : NULL; a && st == PA_OK; a = a->next) {
            st = import_asset(mpk_dir, out_dir, shard_path, fam, a, err);
            count += st == PA_OK;
        }
        cJSON_Delete(shard);
        free(shard_path);
    }
    cJSON_Delete(manifest);
    free(manifest_path);
    /* The database is Apache-2.0: its LICENSE and NOTICE travel with every converted copy. */
    static const char *const legal[] = {"LICENSE", "NOTICE"};
    for (size_t i = 0; st == PA_OK && i < 2; i++) {
        char *src = path_join(mpk_dir, legal[i]);
        char *dst = path_join(out_dir, legal[i]);
        if (!src || !dst)
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", out_dir);
        else if (access(src, F_OK) == 0)
            st = copy_file(src, dst, err);
        free(src);
        free(dst);
    }
    if (n_imported)
        *n_imported = count;
    return st;
}

/* ------------------------------------------------------------------ local models */

pa_status pa_refdb_add_model(const char *out_dir, const char *model_dir, const char *name,
                             const char *family, pa_error *err)
{
    if (!out_dir || !model_dir)
        return pa_error_set(err, PA_E_ARG, "refdb add: no model or output directory");
    if (!good_label(name) || !good_label(family))
        return pa_error_set(err, PA_E_ARG, "%s: --name and --family must be 1..%d printable bytes",
                            model_dir, PA_REFDB_MAX_NAME);
    char abs[PATH_MAX];
    if (!realpath(model_dir, abs))
        return pa_error_set(err, PA_E_IO, "%s: %s", model_dir, strerror(errno));
    char source[PA_REFDB_MAX_NAME + 1];
    int n = snprintf(source, sizeof source, "local:%s", abs);
    if (n < 0 || (size_t)n >= sizeof source)
        snprintf(source, sizeof source, "local:%s", name); /* a very deep path: keep the name */
    pa_fingerprint *fp = NULL;
    pa_fp_options opt = {0};
    if (pa_fingerprint_path(model_dir, &opt, &fp, err) != PA_OK)
        return err->status;
    if (!fp->has_weights && !fp->has_mfi && !fp->has_tfv) {
        pa_fingerprint_free(fp);
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: nothing to fingerprint (no weights, config or "
                            "tokenizer)",
                            model_dir);
    }
    pa_status st = pa_refdb_write_entry(out_dir, name, family, source, fp, NULL, err);
    pa_fingerprint_free(fp);
    return st;
}
