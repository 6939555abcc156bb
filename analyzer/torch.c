/* PyTorch checkpoints (torch.save's zip format), read without running them.
 *
 * A checkpoint is a zip archive of members under one top-level directory: PREFIX/data.pkl (a
 * pickle of the saved object), PREFIX/data/KEY (the raw little-endian bytes of each storage,
 * stored uncompressed), PREFIX/version, PREFIX/byteorder. The zip directory is parsed here (end of
 * central directory, zip64 records, central directory, each needed member's local header), so
 * that every tensor ends up as a byte range of the file, read later by offset like a safetensors
 * tensor.
 *
 * data.pkl is interpreted, never executed: a small stack machine knows the opcodes a state dict
 * is written with (pickle protocol 2, and the few protocol 3/4 ones that carry the same values)
 * and builds plain values. The only importable names are the ones a state dict needs: OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter(_with_state) and the torch.*Storage types.
 * Any other global (os.system, builtins.eval, ...) and any call of something that is not one of
 * these is refused with the name, before anything else happens. Memo, stack, marks, strings,
 * values, tensors and storages are all bounded; each tensor must be contiguous and lie inside its
 * storage, and each storage inside its member.
 */
#include "jsonutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP_EOCD_LEN 22u
#define ZIP64_EOCD_LEN 56u
#define ZIP64_LOCATOR_LEN 20u
#define ZIP_CENTRAL_LEN 46u
#define ZIP_LOCAL_LEN 30u
#define ZIP_MAX_COMMENT 65535u

#define MAX_MEMBERS (PA_ST_MAX_TENSORS + 64u)
#define MAX_CENTRAL_DIR (128u * 1024u * 1024u)
#define MAX_PREFIX 255u
#define MAX_STACK (1u << 20)
#define MAX_MARKS 4096u
#define MAX_MEMO (1u << 22)
#define MAX_VALUES (8u * 1024u * 1024u)
#define MAX_ITEMS (16u * 1024u * 1024u) /* items of all tuples, lists and dicts together */
#define MAX_STRING (1u << 20)
#define MAX_GLOBAL_LINE 256u
#define MAX_NAME 4096u
#define SHOWN "80" /* bytes of a hostile name quoted in a message */

/* ---------------------------------------------------------------- the bytes: a file or memory */

typedef struct src {
    int fd;
    const uint8_t *buf; /* the whole file when parsing from memory */
    uint64_t size;
    const char *label;
} src;

static pa_status src_read(const src *s, void *dst, size_t len, uint64_t off, const char *what,
                          pa_error *err)
{
    if (off > s->size || len > s->size - off)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: %s at byte %llu runs past the end of the file (%llu bytes)",
                            s->label, what, (unsigned long long)off, (unsigned long long)s->size);
    if (s->buf) {
        if (len)
            memcpy(dst, s->buf + off, len);
        return PA_OK;
    }
    int r = pa_pread_exact(s->fd, dst, len, off);
    if (r < 0)
        return pa_error_set(err, PA_E_IO, "%s: read failed: %s", s->label, strerror(errno));
    if (r > 0)
        return pa_error_set(err, PA_E_IO, "%s: file shrank while reading", s->label);
    return PA_OK;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ---------------------------------------------------------------- the zip directory */

typedef struct member {
    const uint8_t *name; /* inside the central directory buffer, not NUL terminated */
    uint32_t name_len;
    uint16_t flags, method;
    uint64_t csize, usize, local;
} member;

typedef struct zipdir {
    uint8_t *cd;
    uint64_t cd_offset; /* members lie before it */
    size_t n;
    member *m; /* sorted by name */
} zipdir;

static void zipdir_free(zipdir *z)
{
    free(z->cd);
    free(z->m);
    memset(z, 0, sizeof *z);
}

static int cmp_member(const void *a, const void *b)
{
    const member *x = a, *y = b;
    uint32_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static const member *find_member(const zipdir *z, const char *name, size_t len)
{
    member key = {.name = (const uint8_t *)name, .name_len = (uint32_t)len};
    return bsearch(&key, z->m, z->n, sizeof *z->m, cmp_member);
}

/* The end of central directory record (and its zip64 form when present): where the central
 * directory is, how long, how many entries. */
static pa_status find_directory(const src *s, uint64_t *cd_off, uint64_t *cd_size, uint64_t *n,
                                uint64_t *cd_limit, pa_error *err)
{
    if (s->size < ZIP_EOCD_LEN)
        return pa_error_set(err, PA_E_FORMAT, "%s: %llu bytes is too short for a zip archive",
                            s->label, (unsigned long long)s->size);
    size_t tail =
        s->size < ZIP_EOCD_LEN + ZIP_MAX_COMMENT ? (size_t)s->size : ZIP_EOCD_LEN + ZIP_MAX_COMMENT;
    uint8_t *t = malloc(tail);
    if (!t)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", s->label);
    pa_status st = src_read(s, t, tail, s->size - tail, "the zip trailer", err);
    if (st) {
        free(t);
        return st;
    }
    /* the record nearest the end whose comment reaches exactly to the end of the file */
    size_t at = tail - ZIP_EOCD_LEN + 1;
    bool found = false;
    while (at-- > 0)
        if (le32(t + at) == ZIP_EOCD_SIG && le16(t + at + 20) == tail - at - ZIP_EOCD_LEN) {
            found = true;
            break;
        }
    if (!found) {
        free(t);
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: no zip end of central directory record (truncated archive?)",
                            s->label);
    }
    const uint8_t *e = t + at;
    uint64_t eocd = s->size - tail + at;
    uint16_t disk = le16(e + 4), cd_disk = le16(e + 6);
    uint64_t n_disk = le16(e + 8), n_all = le16(e + 10);
    *cd_size = le32(e + 12);
    *cd_off = le32(e + 16);
    *cd_limit = eocd;
    free(t);
    uint8_t loc[ZIP64_LOCATOR_LEN];
    bool zip64 = false;
    if (eocd >= ZIP64_LOCATOR_LEN) {
        st = src_read(s, loc, sizeof loc, eocd - ZIP64_LOCATOR_LEN, "the zip64 locator", err);
        if (st)
            return st;
        zip64 = le32(loc) == ZIP64_LOCATOR_SIG;
    }
    if (zip64) {
        uint64_t rec = le64(loc + 8);
        if (le32(loc + 4) != 0 || le32(loc + 16) > 1)
            return pa_error_set(err, PA_E_UNSUPPORTED, "%s: a multi-disk zip archive", s->label);
        if (rec > eocd - ZIP64_LOCATOR_LEN || eocd - ZIP64_LOCATOR_LEN - rec < ZIP64_EOCD_LEN)
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: the zip64 end of central directory record at byte %llu "
                                "is out of place",
                                s->label, (unsigned long long)rec);
        uint8_t r[ZIP64_EOCD_LEN];
        st = src_read(s, r, sizeof r, rec, "the zip64 end of central directory", err);
        if (st)
            return st;
        if (le32(r) != ZIP64_EOCD_SIG)
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: no zip64 end of central directory record at byte %llu",
                                s->label, (unsigned long long)rec);
        disk = le32(r + 16) ? 1 : 0;
        cd_disk = le32(r + 20) ? 1 : 0;
        n_disk = le64(r + 24);
        n_all = le64(r + 32);
        *cd_size = le64(r + 40);
        *cd_off = le64(r + 48);
        *cd_limit = rec;
    } else if (n_all == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_off == 0xFFFFFFFFu) {
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: zip64 sizes without a zip64 end of central directory", s->label);
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_all)
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: a multi-disk zip archive", s->label);
    if (n_all == 0 || n_all > MAX_MEMBERS)
        return pa_error_set(err, n_all ? PA_E_LIMIT : PA_E_FORMAT,
                            "%s: the zip archive has %llu members (1 to %u accepted)", s->label,
                            (unsigned long long)n_all, MAX_MEMBERS);
    if (*cd_size > MAX_CENTRAL_DIR)
        return pa_error_set(err, PA_E_LIMIT,
                            "%s: zip central directory of %llu bytes is over the limit of %u",
                            s->label, (unsigned long long)*cd_size, MAX_CENTRAL_DIR);
    if (*cd_off > *cd_limit || *cd_size > *cd_limit - *cd_off)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: zip central directory [%llu, +%llu) overlaps its end record",
                            s->label, (unsigned long long)*cd_off, (unsigned long long)*cd_size);
    *n = n_all;
    return PA_OK;
}

/* The 64-bit value of a zip64 extra field for a central entry field that says 0xFFFFFFFF. */
static bool zip64_field(const uint8_t *extra, size_t len, int index, uint64_t *out)
{
    size_t p = 0;
    while (len - p >= 4) {
        uint16_t id = le16(extra + p), fl = le16(extra + p + 2);
        if (fl > len - p - 4)
            return false;
        if (id == 0x0001) {
            if ((size_t)(index + 1) * 8 > fl)
                return false;
            *out = le64(extra + p + 4 + (size_t)index * 8);
            return true;
        }
        p += 4u + fl;
    }
    return false;
}

static pa_status read_directory(const src *s, zipdir *z, pa_error *err)
{
    memset(z, 0, sizeof *z);
    uint64_t cd_off = 0, cd_size = 0, n = 0, limit = 0;
    pa_status st = find_directory(s, &cd_off, &cd_size, &n, &limit, err);
    if (st)
        return st;
    if (n > cd_size / ZIP_CENTRAL_LEN)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: %llu zip members cannot fit a central directory of %llu bytes",
                            s->label, (unsigned long long)n, (unsigned long long)cd_size);
    z->cd = malloc(cd_size ? (size_t)cd_size : 1);
    z->m = calloc((size_t)n, sizeof *z->m);
    if (!z->cd || !z->m) {
        zipdir_free(z);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", s->label);
    }
    z->cd_offset = cd_off;
    st = src_read(s, z->cd, (size_t)cd_size, cd_off, "the zip central directory", err);
    size_t p = 0, len = (size_t)cd_size;
    for (size_t i = 0; !st && i < n; i++) {
        const uint8_t *c = z->cd + p;
        if (len - p < ZIP_CENTRAL_LEN || le32(c) != ZIP_CENTRAL_SIG) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: zip central directory entry %zu is damaged",
                              s->label, i);
            break;
        }
        size_t nl = le16(c + 28), xl = le16(c + 30), cl = le16(c + 32);
        if (nl + xl + cl > len - p - ZIP_CENTRAL_LEN) {
            st = pa_error_set(err, PA_E_FORMAT,
                              "%s: zip central directory entry %zu runs past the directory",
                              s->label, i);
            break;
        }
        member *m = &z->m[i];
        m->name = c + ZIP_CENTRAL_LEN;
        m->name_len = (uint32_t)nl;
        m->flags = le16(c + 8);
        m->method = le16(c + 10);
        m->csize = le32(c + 20);
        m->usize = le32(c + 24);
        m->local = le32(c + 42);
        const uint8_t *x = c + ZIP_CENTRAL_LEN + nl;
        int k = 0; /* zip64 values come in this order, each only when its field is saturated */
        bool ok = true;
        if (m->usize == 0xFFFFFFFFu)
            ok = zip64_field(x, xl, k++, &m->usize);
        if (ok && m->csize == 0xFFFFFFFFu)
            ok = zip64_field(x, xl, k++, &m->csize);
        if (ok && m->local == 0xFFFFFFFFu)
            ok = zip64_field(x, xl, k++, &m->local);
        if (!ok) {
            /* the name is not NUL terminated: its length bounds what is shown */
            st = pa_error_set(err, PA_E_FORMAT, "%s: zip member '%.*s' lacks its zip64 sizes",
                              s->label, (int)(nl < 80 ? nl : 80), (const char *)m->name);
            break;
        }
        p += ZIP_CENTRAL_LEN + nl + xl + cl;
    }
    if (!st && p != len)
        st = pa_error_set(err, PA_E_FORMAT,
                          "%s: %zu stray bytes after the zip central directory entries", s->label,
                          len - p);
    if (!st) {
        z->n = (size_t)n;
        qsort(z->m, z->n, sizeof *z->m, cmp_member);
        for (size_t i = 1; i < z->n && !st; i++)
            if (cmp_member(&z->m[i - 1], &z->m[i]) == 0)
                st = pa_error_set(err, PA_E_FORMAT, "%s: two zip members named '%.*s'", s->label,
                                  (int)(z->m[i].name_len < 200 ? z->m[i].name_len : 200),
                                  (const char *)z->m[i].name);
    }
    if (st)
        zipdir_free(z);
    return st;
}

/* Where a stored member's bytes start in the file (its local header checked against the
 * central directory). */
static pa_status member_data(const src *s, const zipdir *z, const member *m, uint64_t *data,
                             pa_error *err)
{
    int nl = (int)(m->name_len < 200 ? m->name_len : 200);
    const char *nm = (const char *)m->name;
    if (m->flags & 1u)
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: zip member '%.*s' is encrypted", s->label,
                            nl, nm);
    if (m->method != 0)
        return pa_error_set(err, PA_E_UNSUPPORTED,
                            "%s: zip member '%.*s' is compressed (method %u); torch.save stores "
                            "members uncompressed",
                            s->label, nl, nm, m->method);
    if (m->csize != m->usize)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: stored zip member '%.*s' has sizes %llu and %llu", s->label, nl,
                            nm, (unsigned long long)m->csize, (unsigned long long)m->usize);
    uint8_t h[ZIP_LOCAL_LEN];
    if (m->local > z->cd_offset || z->cd_offset - m->local < ZIP_LOCAL_LEN)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: zip member '%.*s': local header at byte %llu is out of place",
                            s->label, nl, nm, (unsigned long long)m->local);
    pa_status st = src_read(s, h, sizeof h, m->local, "a zip local header", err);
    if (st)
        return st;
    uint64_t lnl = le16(h + 26), lxl = le16(h + 28);
    uint64_t at = m->local + ZIP_LOCAL_LEN + lnl + lxl;
    if (le32(h) != ZIP_LOCAL_SIG || lnl != m->name_len)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: zip member '%.*s': its local header does not match the "
                            "central directory",
                            s->label, nl, nm);
    if (at > z->cd_offset || m->usize > z->cd_offset - at)
        return pa_error_set(err, PA_E_FORMAT,
                            "%s: zip member '%.*s' ([%llu, +%llu)) runs into the central "
                            "directory",
                            s->label, nl, nm, (unsigned long long)at, (unsigned long long)m->usize);
    char name[MAX_PREFIX + 64];
    if (m->name_len <= sizeof name) {
        st = src_read(s, name, m->name_len, m->local + ZIP_LOCAL_LEN, "a zip local header", err);
        if (st)
            return st;
        if (memcmp(name, m->name, m->name_len) != 0)
            return pa_error_set(err, PA_E_FORMAT,
                                "%s: zip member '%.*s': its local header names another file",
                                s->label, nl, nm);
    }
    *data = at;
    return PA_OK;
}

/* ---------------------------------------------------------------- pickle values */

enum vkind {
    V_NONE,
    V_BOOL,
    V_INT,
    V_FLOAT,
    V_STR,
    V_BYTES,
    V_TUPLE,
    V_LIST,
    V_DICT,
    V_GLOBAL,
    V_STORAGE,
    V_TENSOR
};
static const char *const vkind_name[] = {"None",  "bool", "int",  "float",  "str",     "bytes",
                                         "tuple", "list", "dict", "global", "storage", "tensor"};

/* The only names data.pkl may import. */
enum gkind { G_ODICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

typedef struct val val;
struct val {
    uint8_t kind;
    uint8_t g;  /* V_GLOBAL: its gkind */
    uint32_t n; /* items of a tuple or list, pairs of a dict */
    uint32_t cap;
    val **items; /* dict: key, value, key, value, ... */
    union {
        int64_t i; /* V_INT, V_BOOL; V_GLOBAL of a storage type: its pa_dtype */
        double f;
        size_t idx; /* V_STORAGE, V_TENSOR: index in the machine's tables */
        struct {
            const uint8_t *p; /* inside data.pkl */
            uint32_t len;
        } s;
    } u;
};

#define CHUNK_VALUES 4096u
typedef struct chunk {
    struct chunk *next;
    size_t used;
    val v[CHUNK_VALUES];
} chunk;

typedef struct storage {
    pa_dtype dtype;
    uint64_t numel;
    uint64_t key;  /* its member is PREFIX/data/KEY */
    uint64_t data; /* file offset of its bytes, once resolved */
    bool resolved;
} storage;

typedef struct tensor {
    size_t storage;
    uint64_t offset; /* elements into the storage */
    uint32_t ndim;
    uint64_t shape[PA_MAX_DIMS];
    uint64_t numel;
} tensor;

typedef struct vm {
    const char *label;
    const uint8_t *p;
    size_t len, pos, op_at;
    chunk *chunks;
    size_t n_values, n_items;
    val **stack;
    size_t depth, stack_cap;
    size_t marks[MAX_MARKS];
    size_t n_marks;
    val **memo;
    size_t memo_cap, memo_next;
    storage *st;
    size_t n_st, st_cap;
    int32_t *st_by_key; /* storage index + 1 by decimal key, 0 when unseen */
    size_t key_cap;
    tensor *t;
    size_t n_t, t_cap;
    pa_error *err;
} vm;

static pa_status vm_fail(vm *m, pa_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static pa_status vm_fail(vm *m, pa_status st, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pa_error_set(m->err, st, "%s: data.pkl byte %zu: %s", m->label, m->op_at, what);
}

static val *new_val(vm *m, int kind)
{
    if (m->n_values >= MAX_VALUES) {
        vm_fail(m, PA_E_LIMIT, "more than %u values", MAX_VALUES);
        return NULL;
    }
    if (!m->chunks || m->chunks->used == CHUNK_VALUES) {
        chunk *c = malloc(sizeof *c);
        if (!c) {
            vm_fail(m, PA_E_NOMEM, "out of memory");
            return NULL;
        }
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    val *v = &m->chunks->v[m->chunks->used++];
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)kind;
    m->n_values++;
    return v;
}

static void vm_free(vm *m)
{
    while (m->chunks) {
        chunk *c = m->chunks;
        m->chunks = c->next;
        for (size_t i = 0; i < c->used; i++)
            free(c->v[i].items);
        free(c);
    }
    free(m->stack);
    free(m->memo);
    free(m->st);
    free(m->st_by_key);
    free(m->t);
}

/* Grows *arr (of *cap elements of size sz) to hold need elements. */
static bool grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * sz);
    if (!p)
        return false;
    *arr = p;
    *cap = c;
    return true;
}

/* Appends k items to a tuple, list or dict (k values, or k/2 pairs for a dict). */
static pa_status add_items(vm *m, val *to, val *const *items, size_t k)
{
    size_t have = to->kind == V_DICT ? 2u * to->n : to->n;
    if (k > MAX_STACK || have + k > 2u * MAX_STACK)
        return vm_fail(m, PA_E_LIMIT, "a %s of more than %u items", vkind_name[to->kind],
                       MAX_STACK);
    if (k > MAX_ITEMS - m->n_items)
        return vm_fail(m, PA_E_LIMIT, "more than %u items in all containers", MAX_ITEMS);
    m->n_items += k;
    size_t cap = to->cap;
    void *arr = to->items;
    if (!grow(&arr, &cap, have + k, sizeof *to->items))
        return vm_fail(m, PA_E_NOMEM, "out of memory");
    to->items = arr;
    to->cap = (uint32_t)cap;
    if (k)
        memcpy(to->items + have, items, k * sizeof *items);
    to->n = (uint32_t)(to->kind == V_DICT ? (have + k) / 2 : have + k);
    return PA_OK;
}

static pa_status push(vm *m, val *v)
{
    if (!v)
        return m->err->status;
    if (m->depth >= MAX_STACK)
        return vm_fail(m, PA_E_LIMIT, "stack deeper than %u", MAX_STACK);
    void *s = m->stack;
    if (!grow(&s, &m->stack_cap, m->depth + 1, sizeof *m->stack))
        return vm_fail(m, PA_E_NOMEM, "out of memory");
    m->stack = s;
    m->stack[m->depth++] = v;
    return PA_OK;
}

static size_t floor_of(const vm *m)
{
    return m->n_marks ? m->marks[m->n_marks - 1] : 0;
}

static val *pop(vm *m)
{
    if (m->depth <= floor_of(m)) {
        vm_fail(m, PA_E_FORMAT, "stack underflow");
        return NULL;
    }
    return m->stack[--m->depth];
}

static val *top(vm *m)
{
    if (m->depth <= floor_of(m)) {
        vm_fail(m, PA_E_FORMAT, "stack underflow");
        return NULL;
    }
    return m->stack[m->depth - 1];
}

/* The items above the last mark (*k of them, at *items); the mark is popped. */
static pa_status pop_mark(vm *m, val ***items, size_t *k)
{
    if (!m->n_marks)
        return vm_fail(m, PA_E_FORMAT, "no mark to pop");
    size_t f = m->marks[--m->n_marks];
    *items = m->stack + f;
    *k = m->depth - f;
    m->depth = f;
    return PA_OK;
}

static pa_status need(vm *m, size_t k)
{
    if (m->len - m->pos < k)
        return vm_fail(m, PA_E_FORMAT, "the pickle ends inside opcode 0x%02x (truncated)",
                       m->p[m->op_at]);
    return PA_OK;
}

static val *make_str(vm *m, int kind, uint64_t len)
{
    if (len > MAX_STRING) {
        vm_fail(m, PA_E_LIMIT, "a string of %llu bytes (limit %u)", (unsigned long long)len,
                MAX_STRING);
        return NULL;
    }
    if (need(m, (size_t)len))
        return NULL;
    val *v = new_val(m, kind);
    if (v) {
        v->u.s.p = m->p + m->pos;
        v->u.s.len = (uint32_t)len;
        m->pos += (size_t)len;
    }
    return v;
}

static val *make_int(vm *m, int64_t i)
{
    val *v = new_val(m, V_INT);
    if (v)
        v->u.i = i;
    return v;
}

static bool str_is(const val *v, const char *s)
{
    return v && v->kind == V_STR && v->u.s.len == strlen(s) && memcmp(v->u.s.p, s, v->u.s.len) == 0;
}

/* ---------------------------------------------------------------- the allowed globals */

static const struct {
    const char *module, *name;
    int g;
    pa_dtype dtype;
} allowed[] = {
    {"collections", "OrderedDict", G_ODICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, 0},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, 0},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, 0},
    {"torch", "FloatStorage", G_STORAGE, PA_DT_F32},
    {"torch", "HalfStorage", G_STORAGE, PA_DT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, PA_DT_BF16},
    {"torch", "DoubleStorage", G_STORAGE, PA_DT_F64},
    {"torch", "LongStorage", G_STORAGE, PA_DT_I64},
    {"torch", "IntStorage", G_STORAGE, PA_DT_I32},
    {"torch", "ShortStorage", G_STORAGE, PA_DT_I16},
    {"torch", "CharStorage", G_STORAGE, PA_DT_I8},
    {"torch", "ByteStorage", G_STORAGE, PA_DT_U8},
    {"torch", "BoolStorage", G_STORAGE, PA_DT_BOOL},
    {"torch", "Float8_e4m3fnStorage", G_STORAGE, PA_DT_F8_E4M3},
    {"torch", "Float8_e5m2Storage", G_STORAGE, PA_DT_F8_E5M2},
};

#define UNSAFE_HEAD "unsafe pickle: imports "
#define UNSAFE_TAIL ", which a state dict does not need: refused (nothing was run)"
#define UNSAFE_GLOBAL_MAX 161u

static bool global_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.';
}

/* Appends in[0..n) to out at o (every byte outside [A-Za-z0-9_.] as \xNN), truncated to whole
 * characters; returns the new length. */
static size_t escape_global(const uint8_t *in, size_t n, char *out, size_t o, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        size_t w = global_char(in[i]) ? 1 : 4;
        if (o + w + 1 > size)
            break;
        if (w == 1)
            out[o] = (char)in[i];
        else
            snprintf(out + o, 5, "\\x%02x", in[i]);
        o += w;
    }
    out[o] = '\0';
    return o;
}

bool pa_unsafe_global(const char *msg, char *out, size_t outlen)
{
    if (outlen)
        out[0] = '\0';
    if (!msg || outlen == 0)
        return false;
    size_t len = strlen(msg), tl = strlen(UNSAFE_TAIL), hl = strlen(UNSAFE_HEAD);
    if (len < tl + hl || strcmp(msg + len - tl, UNSAFE_TAIL) != 0)
        return false;
    /* the global holds no space: it starts after the last one before the tail */
    size_t end = len - tl, start = end;
    while (start > 0 && msg[start - 1] != ' ')
        start--;
    if (start == end || start < hl || strncmp(msg + start - hl, UNSAFE_HEAD, hl) != 0)
        return false;
    for (size_t i = start; i < end; i++)
        if (!global_char((unsigned char)msg[i]) && msg[i] != '\\')
            return false;
    snprintf(out, outlen, "%.*s", (int)(end - start), msg + start);
    return true;
}

static val *make_global(vm *m, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl)
{
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (strlen(allowed[i].module) == ml && memcmp(allowed[i].module, mod, ml) == 0 &&
            strlen(allowed[i].name) == nl && memcmp(allowed[i].name, name, nl) == 0) {
            val *v = new_val(m, V_GLOBAL);
            if (v) {
                v->g = (uint8_t)allowed[i].g;
                v->u.i = allowed[i].dtype;
            }
            return v;
        }
    /* Unsafe: loading it runs what it imports. The global is written so that pa_unsafe_global
     * finds it again whatever the path before it holds; the path is shortened so that it fits. */
    char g[UNSAFE_GLOBAL_MAX];
    size_t o = escape_global(mod, ml, g, 0, sizeof g);
    o = escape_global((const uint8_t *)".", 1, g, o, sizeof g);
    escape_global(name, nl, g, o, sizeof g);
    pa_error_set(m->err, PA_E_UNSAFE, "%.200s: data.pkl byte %zu: " UNSAFE_HEAD "%s" UNSAFE_TAIL,
                 m->label, m->op_at, g);
    return NULL;
}

static const char *global_name(const val *v)
{
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (allowed[i].g == v->g && (v->g != G_STORAGE || allowed[i].dtype == (pa_dtype)v->u.i))
            return allowed[i].name;
    return "?";
}

/* ---------------------------------------------------------------- storages and tensors */

/* BINPERSID: ('storage', torch.XStorage, key, location, numel) names a storage member. */
static val *persistent_load(vm *m, const val *pid)
{
    if (!pid || pid->kind != V_TUPLE || pid->n != 5 || !str_is(pid->items[0], "storage")) {
        vm_fail(m, PA_E_UNSUPPORTED,
                "a persistent id that is not ('storage', type, key, "
                "location, size)");
        return NULL;
    }
    const val *type = pid->items[1], *key = pid->items[2], *loc = pid->items[3],
              *num = pid->items[4];
    if (type->kind != V_GLOBAL || type->g != G_STORAGE || key->kind != V_STR ||
        loc->kind != V_STR || num->kind != V_INT || num->u.i < 0) {
        vm_fail(m, PA_E_FORMAT, "a storage reference with the wrong types");
        return NULL;
    }
    /* torch.save numbers storages 0, 1, 2, ...: the key is a decimal index */
    uint64_t k = 0;
    bool ok = key->u.s.len > 0 && key->u.s.len <= 7 && (key->u.s.len == 1 || key->u.s.p[0] != '0');
    for (uint32_t i = 0; ok && i < key->u.s.len; i++) {
        ok = key->u.s.p[i] >= '0' && key->u.s.p[i] <= '9';
        k = k * 10 + (uint64_t)(key->u.s.p[i] - '0');
    }
    if (!ok || k >= MAX_MEMBERS) {
        vm_fail(m, PA_E_FORMAT, "storage key '%.*s' is not a storage number",
                (int)(key->u.s.len < 40 ? key->u.s.len : 40), (const char *)key->u.s.p);
        return NULL;
    }
    pa_dtype dt = (pa_dtype)type->u.i;
    uint64_t numel = (uint64_t)num->u.i;
    if (numel > UINT64_MAX / pa_dtype_size(dt)) {
        vm_fail(m, PA_E_FORMAT, "storage %llu of %llu elements overflows 64 bits",
                (unsigned long long)k, (unsigned long long)numel);
        return NULL;
    }
    size_t old = m->key_cap;
    void *arr = m->st_by_key;
    if (!grow(&arr, &m->key_cap, (size_t)k + 1, sizeof *m->st_by_key)) {
        vm_fail(m, PA_E_NOMEM, "out of memory");
        return NULL;
    }
    m->st_by_key = arr;
    memset(m->st_by_key + old, 0, (m->key_cap - old) * sizeof *m->st_by_key);
    int32_t idx = m->st_by_key[k];
    if (idx) {
        const storage *s = &m->st[idx - 1];
        if (s->dtype != dt || s->numel != numel) {
            vm_fail(m, PA_E_FORMAT, "storage %llu is named twice with different types or sizes",
                    (unsigned long long)k);
            return NULL;
        }
    } else {
        void *sa = m->st;
        if (!grow(&sa, &m->st_cap, m->n_st + 1, sizeof *m->st)) {
            vm_fail(m, PA_E_NOMEM, "out of memory");
            return NULL;
        }
        m->st = sa;
        m->st[m->n_st] = (storage){.dtype = dt, .numel = numel, .key = k};
        idx = (int32_t)++m->n_st;
        m->st_by_key[k] = idx;
    }
    val *v = new_val(m, V_STORAGE);
    if (v)
        v->u.idx = (size_t)idx - 1;
    return v;
}

static bool int_tuple(const val *v, uint64_t *out, uint32_t *n)
{
    if (v->kind != V_TUPLE || v->n > PA_MAX_DIMS)
        return false;
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->items[i]->kind != V_INT || v->items[i]->u.i < 0)
            return false;
        out[i] = (uint64_t)v->items[i]->u.i;
    }
    *n = v->n;
    return true;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static val *rebuild_tensor(vm *m, const val *args)
{
    if (args->n != 6 && args->n != 7) {
        vm_fail(m, PA_E_FORMAT, "_rebuild_tensor_v2 with %u arguments", args->n);
        return NULL;
    }
    val *const *a = args->items;
    tensor t = {0};
    uint64_t stride[PA_MAX_DIMS];
    uint32_t nstride = 0;
    if (a[0]->kind != V_STORAGE || a[1]->kind != V_INT || a[1]->u.i < 0 ||
        !int_tuple(a[2], t.shape, &t.ndim) || !int_tuple(a[3], stride, &nstride) ||
        nstride != t.ndim || a[4]->kind != V_BOOL || a[5]->kind != V_DICT ||
        (args->n == 7 && a[6]->kind != V_DICT && a[6]->kind != V_NONE)) {
        vm_fail(m, PA_E_FORMAT,
                "_rebuild_tensor_v2 with arguments of the wrong types (or more "
                "than %d dimensions)",
                PA_MAX_DIMS);
        return NULL;
    }
    t.storage = a[0]->u.idx;
    t.offset = (uint64_t)a[1]->u.i;
    const storage *s = &m->st[t.storage];
    t.numel = 1;
    for (uint32_t d = 0; d < t.ndim; d++) {
        if (t.shape[d] && t.numel > UINT64_MAX / t.shape[d]) {
            vm_fail(m, PA_E_FORMAT, "a tensor shape whose product overflows 64 bits");
            return NULL;
        }
        t.numel *= t.shape[d];
    }
    if (t.numel) {
        /* contiguous, row-major: the only layout read by offset (dims of size 1 may have any
         * stride, as torch leaves them) */
        uint64_t want = 1;
        for (uint32_t d = t.ndim; d-- > 0;) {
            if (t.shape[d] != 1 && stride[d] != want) {
                vm_fail(m, PA_E_UNSUPPORTED,
                        "a tensor that is not contiguous (dimension %u has stride %llu, not "
                        "%llu): save it with .contiguous()",
                        d, (unsigned long long)stride[d], (unsigned long long)want);
                return NULL;
            }
            want *= t.shape[d];
        }
    }
    if (t.offset > s->numel || t.numel > s->numel - t.offset) {
        vm_fail(m, PA_E_FORMAT,
                "a tensor of %llu elements at offset %llu of a storage of %llu elements",
                (unsigned long long)t.numel, (unsigned long long)t.offset,
                (unsigned long long)s->numel);
        return NULL;
    }
    if (m->n_t >= PA_ST_MAX_TENSORS) {
        vm_fail(m, PA_E_LIMIT, "more than %u tensors", PA_ST_MAX_TENSORS);
        return NULL;
    }
    void *ta = m->t;
    if (!grow(&ta, &m->t_cap, m->n_t + 1, sizeof *m->t)) {
        vm_fail(m, PA_E_NOMEM, "out of memory");
        return NULL;
    }
    m->t = ta;
    m->t[m->n_t] = t;
    val *v = new_val(m, V_TENSOR);
    if (v)
        v->u.idx = m->n_t++;
    return v;
}

static val *reduce(vm *m, const val *fn, const val *args)
{
    if (fn->kind != V_GLOBAL) {
        vm_fail(m, PA_E_UNSUPPORTED, "calls a %s: refused", vkind_name[fn->kind]);
        return NULL;
    }
    if (args->kind != V_TUPLE) {
        vm_fail(m, PA_E_FORMAT, "calls %s with a %s for arguments", global_name(fn),
                vkind_name[args->kind]);
        return NULL;
    }
    switch (fn->g) {
    case G_ODICT:
        if (args->n == 0)
            return new_val(m, V_DICT);
        break;
    case G_REBUILD_TENSOR:
        return rebuild_tensor(m, args);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n == (fn->g == G_REBUILD_PARAM ? 3u : 4u) && args->items[0]->kind == V_TENSOR &&
            args->items[1]->kind == V_BOOL)
            return args->items[0];
        break;
    default:
        vm_fail(m, PA_E_UNSUPPORTED, "calls %s, which a state dict never calls: refused",
                global_name(fn));
        return NULL;
    }
    vm_fail(m, PA_E_FORMAT, "calls %s with %u unexpected arguments", global_name(fn), args->n);
    return NULL;
}

/* ---------------------------------------------------------------- the machine */

static pa_status memo_put(vm *m, uint64_t idx)
{
    if (idx >= MAX_MEMO)
        return vm_fail(m, PA_E_LIMIT, "memo index %llu (limit %u)", (unsigned long long)idx,
                       MAX_MEMO);
    val *v = top(m);
    if (!v)
        return m->err->status;
    size_t old = m->memo_cap;
    void *arr = m->memo;
    if (!grow(&arr, &m->memo_cap, (size_t)idx + 1, sizeof *m->memo))
        return vm_fail(m, PA_E_NOMEM, "out of memory");
    m->memo = arr;
    memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
    m->memo[idx] = v;
    if (idx >= m->memo_next)
        m->memo_next = (size_t)idx + 1;
    return PA_OK;
}

static pa_status memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return vm_fail(m, PA_E_FORMAT, "memo index %llu was never set", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static uint64_t uarg(vm *m, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | m->p[m->pos + i];
    m->pos += n;
    return v;
}

/* Runs data.pkl to its STOP; *result is the object it built. */
static pa_status run(vm *m, val **result)
{
    pa_status st = PA_OK;
    while (!st) {
        if (m->pos >= m->len)
            return vm_fail(m, PA_E_FORMAT, "the pickle ends without STOP (truncated)");
        m->op_at = m->pos;
        uint8_t op = m->p[m->pos++];
        val **items = NULL, *v, *w;
        size_t k = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if (!(st = need(m, 1)) && (k = (size_t)uarg(m, 1)) > 5)
                st = vm_fail(m, PA_E_UNSUPPORTED, "pickle protocol %zu", k);
            break;
        case 0x95: /* FRAME (protocol 4): a length hint */
            if (!(st = need(m, 8)))
                (void)uarg(m, 8);
            break;
        case '.': /* STOP */
            v = pop(m);
            if (!v)
                return m->err->status;
            if (m->depth || m->n_marks)
                return vm_fail(m, PA_E_FORMAT, "STOP with %zu values and %zu marks left over",
                               m->depth, m->n_marks);
            *result = v;
            return PA_OK;
        case '(': /* MARK */
            if (m->n_marks >= MAX_MARKS)
                return vm_fail(m, PA_E_LIMIT, "more than %u nested marks", MAX_MARKS);
            m->marks[m->n_marks++] = m->depth;
            break;
        case '}': /* EMPTY_DICT */
            st = push(m, new_val(m, V_DICT));
            break;
        case ']': /* EMPTY_LIST */
            st = push(m, new_val(m, V_LIST));
            break;
        case ')': /* EMPTY_TUPLE */
            st = push(m, new_val(m, V_TUPLE));
            break;
        case 't':    /* TUPLE */
        case 'l':    /* LIST */
        case 'd':    /* DICT */
        case 0x85:   /* TUPLE1 */
        case 0x86:   /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            if (op >= 0x85) {
                k = op - 0x84u;
                if (m->depth < floor_of(m) + k)
                    return vm_fail(m, PA_E_FORMAT, "stack underflow");
                m->depth -= k;
                items = m->stack + m->depth;
            } else if ((st = pop_mark(m, &items, &k))) {
                break;
            }
            if (op == 'd' && k % 2)
                return vm_fail(m, PA_E_FORMAT, "DICT with an odd number of items");
            v = new_val(m, op == 'l' ? V_LIST : op == 'd' ? V_DICT : V_TUPLE);
            if (!v)
                return m->err->status;
            if (!(st = add_items(m, v, items, k)))
                st = push(m, v);
            break;
        }
        case 'a': /* APPEND */
            w = pop(m);
            v = w ? top(m) : NULL;
            if (!v)
                return m->err->status;
            if (v->kind != V_LIST)
                return vm_fail(m, PA_E_FORMAT, "APPEND to a %s", vkind_name[v->kind]);
            st = add_items(m, v, &w, 1);
            break;
        case 'e': /* APPENDS */
        case 'u': /* SETITEMS */
            if ((st = pop_mark(m, &items, &k)))
                break;
            v = top(m);
            if (!v)
                return m->err->status;
            if (v->kind != (op == 'e' ? V_LIST : V_DICT) || (op == 'u' && k % 2))
                return vm_fail(m, PA_E_FORMAT, "%s on a %s", op == 'e' ? "APPENDS" : "SETITEMS",
                               vkind_name[v->kind]);
            st = add_items(m, v, items, k);
            break;
        case 's': /* SETITEM */
            if (m->depth < floor_of(m) + 3)
                return vm_fail(m, PA_E_FORMAT, "stack underflow");
            v = m->stack[m->depth - 3];
            if (v->kind != V_DICT)
                return vm_fail(m, PA_E_FORMAT, "SETITEM on a %s", vkind_name[v->kind]);
            m->depth -= 2;
            st = add_items(m, v, m->stack + m->depth, 2);
            break;
        case 'X': /* BINUNICODE */
        case 'T': /* BINSTRING */
        case 'B': /* BINBYTES */
            if (!(st = need(m, 4))) {
                uint64_t n = uarg(m, 4);
                if (op == 'T' && n > INT32_MAX)
                    return vm_fail(m, PA_E_FORMAT, "BINSTRING of negative length");
                st = push(m, make_str(m, op == 'B' ? V_BYTES : V_STR, n));
            }
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
        case 'C':  /* SHORT_BINBYTES */
            if (!(st = need(m, 1)))
                st = push(m, make_str(m, op == 'C' ? V_BYTES : V_STR, uarg(m, 1)));
            break;
        case 0x8d: /* BINUNICODE8 */
            if (!(st = need(m, 8)))
                st = push(m, make_str(m, V_STR, uarg(m, 8)));
            break;
        case 'J': /* BININT */
            if (!(st = need(m, 4)))
                st = push(m, make_int(m, (int32_t)(uint32_t)uarg(m, 4)));
            break;
        case 'K': /* BININT1 */
            if (!(st = need(m, 1)))
                st = push(m, make_int(m, (int64_t)uarg(m, 1)));
            break;
        case 'M': /* BININT2 */
            if (!(st = need(m, 2)))
                st = push(m, make_int(m, (int64_t)uarg(m, 2)));
            break;
        case 0x8a: /* LONG1: little-endian two's complement */
            if ((st = need(m, 1)))
                break;
            k = (size_t)uarg(m, 1);
            if (k > 8)
                return vm_fail(m, PA_E_LIMIT, "an integer of %zu bytes", k);
            if ((st = need(m, k)))
                break;
            {
                uint64_t u = uarg(m, k);
                if (k && k < 8 && (u >> (8 * k - 1)) & 1)
                    u |= ~(uint64_t)0 << (8 * k);
                st = push(m, make_int(m, (int64_t)u));
            }
            break;
        case 'G': /* BINFLOAT: big-endian double */
            if (!(st = need(m, 8))) {
                uint64_t u = 0;
                for (int i = 0; i < 8; i++)
                    u = u << 8 | m->p[m->pos++];
                v = new_val(m, V_FLOAT);
                if (v)
                    memcpy(&v->u.f, &u, sizeof u);
                st = push(m, v);
            }
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            v = new_val(m, V_BOOL);
            if (v)
                v->u.i = op == 0x88;
            st = push(m, v);
            break;
        case 'N': /* NONE */
            st = push(m, new_val(m, V_NONE));
            break;
        case 'q': /* BINPUT */
            if (!(st = need(m, 1)))
                st = memo_put(m, uarg(m, 1));
            break;
        case 'r': /* LONG_BINPUT */
            if (!(st = need(m, 4)))
                st = memo_put(m, uarg(m, 4));
            break;
        case 0x94: /* MEMOIZE */
            st = memo_put(m, m->memo_next);
            break;
        case 'h': /* BINGET */
            if (!(st = need(m, 1)))
                st = memo_get(m, uarg(m, 1));
            break;
        case 'j': /* LONG_BINGET */
            if (!(st = need(m, 4)))
                st = memo_get(m, uarg(m, 4));
            break;
        case 'c': { /* GLOBAL: "module\nname\n" */
            const uint8_t *mod = m->p + m->pos, *nl1, *nl2;
            size_t rest = m->len - m->pos;
            nl1 = memchr(mod, '\n', rest < MAX_GLOBAL_LINE ? rest : MAX_GLOBAL_LINE);
            rest -= nl1 ? (size_t)(nl1 - mod) + 1 : rest;
            nl2 =
                nl1 ? memchr(nl1 + 1, '\n', rest < MAX_GLOBAL_LINE ? rest : MAX_GLOBAL_LINE) : NULL;
            if (!nl2)
                return vm_fail(m, PA_E_FORMAT, "GLOBAL without two short lines (truncated?)");
            m->pos = (size_t)(nl2 + 1 - m->p);
            st =
                push(m, make_global(m, mod, (size_t)(nl1 - mod), nl1 + 1, (size_t)(nl2 - nl1 - 1)));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            w = pop(m);
            v = w ? pop(m) : NULL;
            if (!v)
                return m->err->status;
            if (v->kind != V_STR || w->kind != V_STR)
                return vm_fail(m, PA_E_FORMAT, "STACK_GLOBAL of a non-string");
            st = push(m, make_global(m, v->u.s.p, v->u.s.len, w->u.s.p, w->u.s.len));
            break;
        case 'Q': /* BINPERSID */
            v = pop(m);
            if (!v)
                return m->err->status;
            st = push(m, persistent_load(m, v));
            break;
        case 'R': /* REDUCE */
            w = pop(m);
            v = w ? pop(m) : NULL;
            if (!v)
                return m->err->status;
            st = push(m, reduce(m, v, w));
            break;
        case 'b': /* BUILD: the state of an OrderedDict (its _metadata) is of no interest */
            w = pop(m);
            v = w ? top(m) : NULL;
            if (!v)
                return m->err->status;
            if (v->kind != V_DICT)
                return vm_fail(m, PA_E_UNSUPPORTED, "BUILD on a %s: refused", vkind_name[v->kind]);
            break;
        case '0': /* POP */
            if (!pop(m))
                return m->err->status;
            break;
        case '1': /* POP_MARK */
            st = pop_mark(m, &items, &k);
            break;
        case '2': /* DUP */
            v = top(m);
            st = v ? push(m, v) : m->err->status;
            break;
        default:
            return vm_fail(m, PA_E_UNSUPPORTED,
                           "opcode 0x%02x is not one a state dict is written with: refused", op);
        }
    }
    return st;
}

/* ---------------------------------------------------------------- the state dict */

static int cmp_desc_name(const void *a, const void *b)
{
    return strcmp(((const pa_tensor_desc *)a)->name, ((const pa_tensor_desc *)b)->name);
}

static int cmp_desc_begin(const void *a, const void *b)
{
    const pa_tensor_desc *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The dict of tensors: the pickled object itself, or the one dict of tensors under
 * "state_dict", "model" or "module" of a training checkpoint. */
static const val *state_dict(const val *root)
{
    if (root->kind != V_DICT)
        return NULL;
    const val *inner = NULL;
    for (uint32_t i = 0; i < root->n; i++) {
        const val *k = root->items[2 * i], *v = root->items[2 * i + 1];
        if (v->kind == V_TENSOR)
            return root;
        if (v->kind == V_DICT &&
            (str_is(k, "state_dict") || str_is(k, "model") || str_is(k, "module")))
            inner = inner ? root : v;
    }
    if (!inner || inner == root)
        return root;
    for (uint32_t i = 0; i < inner->n; i++)
        if (inner->items[2 * i + 1]->kind == V_TENSOR)
            return inner;
    return root;
}

static pa_status build_header(const src *s, const zipdir *z, const char *prefix, vm *m,
                              const val *root, pa_st_header *out, pa_error *err)
{
    const val *sd = state_dict(root);
    if (!sd)
        return pa_error_set(err, PA_E_UNSUPPORTED,
                            "%s: data.pkl holds a %s, not a state dict (a dict of tensors)",
                            s->label, vkind_name[root->kind]);
    /* names are copied below: a name may be referenced many times through the memo, but the
     * names of a real state dict are each written once, so their bytes fit in data.pkl */
    size_t n = 0, name_bytes = 0;
    for (uint32_t i = 0; i < sd->n; i++)
        if (sd->items[2 * i + 1]->kind == V_TENSOR) {
            n++;
            if (sd->items[2 * i]->kind == V_STR)
                name_bytes += sd->items[2 * i]->u.s.len;
        }
    if (n > PA_ST_MAX_TENSORS || name_bytes > m->len)
        return pa_error_set(err, PA_E_LIMIT,
                            "%s: %zu tensors with %zu bytes of names in a data.pkl of %zu bytes",
                            s->label, n, name_bytes, m->len);
    if (!n)
        return pa_error_set(err, PA_E_UNSUPPORTED, "%s: data.pkl holds a dict without tensors",
                            s->label);
    out->tensors = calloc(n, sizeof *out->tensors);
    if (!out->tensors)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", s->label);
    out->n_tensors = n;
    size_t j = 0;
    for (uint32_t i = 0; i < sd->n; i++) {
        const val *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        if (v->kind != V_TENSOR)
            continue;
        if (k->kind != V_STR || k->u.s.len == 0 || k->u.s.len > MAX_NAME)
            return pa_error_set(err, PA_E_FORMAT, "%s: a tensor keyed by a %s%s", s->label,
                                k->kind == V_STR ? "string of " : vkind_name[k->kind],
                                k->kind == V_STR ? (k->u.s.len ? "over 4096 bytes" : "0 bytes")
                                                 : "");
        for (size_t b = 0; b < k->u.s.len;) {
            size_t c = pa_utf8_printable(k->u.s.p + b, k->u.s.len - b);
            if (!c)
                return pa_error_set(
                    err, PA_E_FORMAT, "%s: tensor name '%.*s' is not printable UTF-8", s->label,
                    (int)(k->u.s.len < 80 ? k->u.s.len : 80), (const char *)k->u.s.p);
            b += c;
        }
        const tensor *t = &m->t[v->u.idx];
        storage *sto = &m->st[t->storage];
        size_t es = pa_dtype_size(sto->dtype);
        pa_tensor_desc *d = &out->tensors[j++];
        d->name = strndup((const char *)k->u.s.p, k->u.s.len);
        if (!d->name)
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", s->label);
        if (!sto->resolved) {
            char member_name[MAX_PREFIX + 32];
            int ml = snprintf(member_name, sizeof member_name, "%s/data/%llu", prefix,
                              (unsigned long long)sto->key);
            const member *mb = find_member(z, member_name, (size_t)ml);
            if (!mb)
                return pa_error_set(err, PA_E_FORMAT,
                                    "%s: tensor '%s': no zip member %s holds its storage", s->label,
                                    d->name, member_name);
            pa_status st = member_data(s, z, mb, &sto->data, err);
            if (st)
                return st;
            if (sto->numel * es > mb->usize)
                return pa_error_set(err, PA_E_FORMAT,
                                    "%s: storage %s of %llu bytes is larger than its member "
                                    "(%llu bytes)",
                                    s->label, member_name, (unsigned long long)(sto->numel * es),
                                    (unsigned long long)mb->usize);
            sto->resolved = true;
        }
        d->dtype = sto->dtype;
        d->ndim = t->ndim;
        memcpy(d->shape, t->shape, sizeof d->shape);
        d->numel = t->numel;
        d->begin = sto->data + t->offset * es; /* inside the storage: no overflow */
        d->end = d->begin + t->numel * es;
    }
    qsort(out->tensors, n, sizeof *out->tensors, cmp_desc_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(out->tensors[i - 1].name, out->tensors[i].name) == 0)
            return pa_error_set(err, PA_E_FORMAT, "%s: tensor '%." SHOWN "s' is saved twice",
                                s->label, out->tensors[i].name);
    qsort(out->tensors, n, sizeof *out->tensors, cmp_desc_begin);
    return PA_OK;
}

/* The PREFIX of the one PREFIX/data.pkl member. */
static pa_status find_pickle(const src *s, const zipdir *z, char *prefix, const member **pkl,
                             pa_error *err)
{
    *pkl = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const member *m = &z->m[i];
        const uint8_t *slash = memchr(m->name, '/', m->name_len);
        size_t pl = slash ? (size_t)(slash - m->name) : 0;
        if (!slash || m->name_len - pl - 1 != 8 || memcmp(slash + 1, "data.pkl", 8) != 0)
            continue;
        if (*pkl)
            return pa_error_set(err, PA_E_FORMAT, "%s: two data.pkl members in one archive",
                                s->label);
        if (pl == 0 || pl > MAX_PREFIX || memchr(m->name, '\0', pl))
            return pa_error_set(err, PA_E_FORMAT, "%s: data.pkl under a bad directory name",
                                s->label);
        memcpy(prefix, m->name, pl);
        prefix[pl] = '\0';
        *pkl = m;
    }
    if (!*pkl)
        return pa_error_set(err, PA_E_UNSUPPORTED,
                            "%s: a zip archive without data.pkl, not a PyTorch checkpoint",
                            s->label);
    return PA_OK;
}

static pa_status check_byteorder(const src *s, const zipdir *z, const char *prefix, pa_error *err)
{
    char name[MAX_PREFIX + 16], text[16];
    int nl = snprintf(name, sizeof name, "%s/byteorder", prefix);
    const member *m = find_member(z, name, (size_t)nl);
    if (!m)
        return PA_OK; /* written since PyTorch 2.1; older checkpoints are little-endian */
    uint64_t at;
    pa_status st = member_data(s, z, m, &at, err);
    if (st)
        return st;
    if (m->usize > sizeof text)
        return pa_error_set(err, PA_E_FORMAT, "%s: %s holds %llu bytes", s->label, name,
                            (unsigned long long)m->usize);
    st = src_read(s, text, (size_t)m->usize, at, name, err);
    if (st)
        return st;
    if (m->usize == 6 && memcmp(text, "little", 6) == 0)
        return PA_OK;
    return pa_error_set(err, PA_E_UNSUPPORTED, "%s: a checkpoint whose byte order is not little",
                        s->label);
}

static pa_status parse(const src *s, pa_st_header *out, pa_error *err)
{
    memset(out, 0, sizeof *out);
    zipdir z;
    pa_status st = read_directory(s, &z, err);
    if (st)
        return st;
    char prefix[MAX_PREFIX + 1];
    const member *pkl;
    uint64_t at = 0;
    uint8_t *buf = NULL;
    st = find_pickle(s, &z, prefix, &pkl, err);
    if (!st)
        st = check_byteorder(s, &z, prefix, err);
    if (!st)
        st = member_data(s, &z, pkl, &at, err);
    if (!st && pkl->usize > PA_TORCH_MAX_PICKLE)
        st = pa_error_set(err, PA_E_LIMIT, "%s: data.pkl of %llu bytes is over the limit of %u",
                          s->label, (unsigned long long)pkl->usize, PA_TORCH_MAX_PICKLE);
    if (!st && !(buf = malloc(pkl->usize ? (size_t)pkl->usize : 1)))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", s->label);
    if (!st)
        st = src_read(s, buf, (size_t)pkl->usize, at, "data.pkl", err);
    if (!st) {
        vm m = {.label = s->label, .p = buf, .len = (size_t)pkl->usize, .err = err};
        val *root = NULL;
        st = run(&m, &root);
        if (!st) {
            out->data_offset = 0; /* tensor ranges are file offsets */
            out->data_len = s->size;
            st = build_header(s, &z, prefix, &m, root, out, err);
        }
        vm_free(&m);
    }
    free(buf);
    zipdir_free(&z);
    if (st)
        pa_st_header_free(out);
    return st;
}

pa_status pa_torch_parse(const uint8_t *buf, size_t len, const char *label, pa_st_header *out,
                         pa_error *err)
{
    if (!label)
        label = "torch";
    if (!out || (!buf && len))
        return pa_error_set(err, PA_E_ARG, "%s: no buffer or header", label);
    src s = {.fd = -1, .buf = buf ? buf : (const uint8_t *)"", .size = len, .label = label};
    return parse(&s, out, err);
}

pa_status pa_torch_read(int fd, const char *label, pa_st_header *out, pa_error *err)
{
    if (!label)
        label = "torch";
    if (!out)
        return pa_error_set(err, PA_E_ARG, "%s: no header to fill", label);
    memset(out, 0, sizeof *out);
    src s = {.fd = fd, .label = label};
    pa_status st = pa_regular_size(fd, label, &s.size, err);
    return st ? st : parse(&s, out, err);
}

const char *pa_torch_legacy(const uint8_t *b, size_t n)
{
    /* torch.save before 1.6: a pickle of the magic number 0x1950a86a20f9469cfc6c first */
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                     0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (n >= sizeof legacy && memcmp(b, legacy, sizeof legacy) == 0)
        return "a legacy torch.save checkpoint (PyTorch before 1.6, not a zip archive); "
               "re-save it with a newer PyTorch or as safetensors";
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "a bare pickle, not a checkpoint format provfs reads (refused, never run)";
    return NULL;
}
