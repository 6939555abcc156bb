/* mkmodel torch: a model directory's safetensors weights written the way torch.save writes a
 * state dict — a zip archive of stored members PREFIX/data.pkl (a protocol-2 pickle of an
 * OrderedDict of _rebuild_tensor_v2 calls on persistent storage ids), PREFIX/byteorder,
 * PREFIX/data/0.. (one storage per tensor, 64-byte aligned) and PREFIX/version. The tensor bytes
 * are copied unchanged, so the copy has the same weights as its source.
 *
 *   mkmodel torch SRC_DIR OUT_DIR   config, tokenizer and pytorch_model.bin, or one
 *                                   pytorch_model-0000i-of-0000N.bin per source shard plus
 *                                   pytorch_model.bin.index.json
 *   mkmodel torch SRC_DIR OUT.pt    the state dict alone, one file (any name not a directory)
 */
#include "mkmodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALIGN 64u
#define COPY_CHUNK (1u << 20)

/* ---------------------------------------------------------------- bytes */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    b->p = mk_grow(b->p, &b->cap, b->n + n, 1);
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_le(buf *b, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)n);
}

static void put_op(buf *b, uint8_t op)
{
    put(b, &op, 1);
}

static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- the pickle */

static void p_str(buf *b, const char *s)
{
    put_op(b, 'X'); /* BINUNICODE */
    put_le(b, strlen(s), 4);
    put(b, s, strlen(s));
}

/* An integer as Python's pickler writes it: BININT1, BININT2, BININT or LONG1. */
static void p_int(buf *b, uint64_t v)
{
    if (v < 256) {
        put_op(b, 'K');
        put_le(b, v, 1);
    } else if (v < 65536) {
        put_op(b, 'M');
        put_le(b, v, 2);
    } else if (v < 0x80000000u) {
        put_op(b, 'J');
        put_le(b, v, 4);
    } else {
        put_op(b, 0x8a);
        put_op(b, 8);
        put_le(b, v, 8);
    }
}

static void p_global(buf *b, const char *module, const char *name, uint32_t *memo, uint32_t *next)
{
    if (*memo) { /* BINGET of the memo slot it was put in (stored + 1) */
        put_op(b, 'h');
        put_le(b, *memo - 1, 1);
        return;
    }
    put_op(b, 'c');
    put(b, module, strlen(module));
    put_op(b, '\n');
    put(b, name, strlen(name));
    put_op(b, '\n');
    put_op(b, 'q'); /* BINPUT */
    put_le(b, *next, 1);
    *memo = ++*next;
}

static void p_ints(buf *b, const uint64_t *v, uint32_t n)
{
    if (n == 0) {
        put_op(b, ')');
        return;
    }
    if (n > 3)
        put_op(b, '(');
    for (uint32_t i = 0; i < n; i++)
        p_int(b, v[i]);
    put_op(b, n > 3 ? 't' : (uint8_t)(0x84 + n)); /* TUPLE or TUPLE1..3 */
}

static const char *storage_type(pa_dtype dt)
{
    switch (dt) {
    case PA_DT_F32:
        return "FloatStorage";
    case PA_DT_F16:
        return "HalfStorage";
    case PA_DT_BF16:
        return "BFloat16Storage";
    case PA_DT_F64:
        return "DoubleStorage";
    case PA_DT_I64:
        return "LongStorage";
    case PA_DT_I32:
        return "IntStorage";
    case PA_DT_I16:
        return "ShortStorage";
    case PA_DT_I8:
        return "CharStorage";
    case PA_DT_U8:
        return "ByteStorage";
    case PA_DT_BOOL:
        return "BoolStorage";
    default:
        return NULL;
    }
}

/* data.pkl of an OrderedDict {name: tensor} with tensor i in storage i. */
static void state_dict_pickle(buf *b, const mk_src_tensor *const *ts, size_t n)
{
    uint32_t next = 0, g_odict = 0, g_rebuild = 0, g_storage[PA_DT_COUNT] = {0};
    put_op(b, 0x80);
    put_op(b, 2);
    p_global(b, "collections", "OrderedDict", &g_odict, &next);
    put_op(b, ')');
    put_op(b, 'R');
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) /* items in batches of 1000, as pickle does */
            put_op(b, '(');
        const pa_tensor_desc *d = ts[i]->desc;
        const char *type = storage_type(d->dtype);
        if (!type)
            mk_die(MK_EXIT_USAGE, "%s: dtype %s has no torch storage type", d->name,
                   pa_dtype_name(d->dtype));
        p_str(b, d->name);
        p_global(b, "torch._utils", "_rebuild_tensor_v2", &g_rebuild, &next);
        put_op(b, '(');
        put_op(b, '('); /* the persistent id */
        p_str(b, "storage");
        p_global(b, "torch", type, &g_storage[d->dtype], &next);
        char key[24];
        snprintf(key, sizeof key, "%zu", i);
        p_str(b, key);
        p_str(b, "cpu");
        p_int(b, d->numel);
        put_op(b, 't');
        put_op(b, 'Q'); /* BINPERSID */
        p_int(b, 0);    /* storage offset */
        p_ints(b, d->shape, d->ndim);
        uint64_t stride[PA_MAX_DIMS], s = 1;
        for (uint32_t k = d->ndim; k-- > 0;) {
            stride[k] = s;
            s *= d->shape[k];
        }
        p_ints(b, stride, d->ndim);
        put_op(b, 0x89); /* requires_grad False */
        p_global(b, "collections", "OrderedDict", &g_odict, &next);
        put_op(b, ')');
        put_op(b, 'R'); /* backward hooks: OrderedDict() */
        put_op(b, 't');
        put_op(b, 'R');
        if (i % 1000 == 999 || i + 1 == n)
            put_op(b, 'u'); /* SETITEMS */
    }
    put_op(b, '.');
}

/* ---------------------------------------------------------------- the zip archive */

typedef struct zip_out {
    FILE *f;
    const char *path;
    uint64_t at;
    buf central;
    size_t n;
} zip_out;

static void out_write(zip_out *z, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, z->f) != n)
        mk_die(MK_EXIT_IO, "%s: write failed: %s", z->path, strerror(errno));
    z->at += n;
}

/* Starts a stored member: its local header padded (extra field "FB", as torch writes) so that
 * the data starts on a 64-byte boundary. Returns the header's offset. */
static uint64_t member_begin(zip_out *z, const char *name)
{
    uint64_t start = z->at;
    size_t nl = strlen(name);
    uint64_t data = start + 30 + nl + 4;
    size_t pad = (size_t)((ALIGN - data % ALIGN) % ALIGN);
    buf h = {0};
    put_le(&h, 0x04034b50u, 4);
    put_le(&h, 20, 2); /* version needed */
    put_le(&h, 0, 2);  /* flags */
    put_le(&h, 0, 2);  /* stored */
    put_le(&h, 0, 4);  /* time, date */
    put_le(&h, 0, 4);  /* crc, patched */
    put_le(&h, 0, 4);  /* sizes, patched */
    put_le(&h, 0, 4);
    put_le(&h, nl, 2);
    put_le(&h, 4 + pad, 2);
    put(&h, name, nl);
    put_le(&h, 0x4246, 2);
    put_le(&h, pad, 2);
    static const uint8_t zeros[ALIGN];
    put(&h, zeros, pad);
    out_write(z, h.p, h.n);
    free(h.p);
    return start;
}

static void member_end(zip_out *z, const char *name, uint64_t start, uint32_t crc, uint64_t size)
{
    if (z->at > 0xFFFFFFFFu)
        mk_die(MK_EXIT_USAGE, "%s: over 4 GiB (mkmodel torch writes no zip64)", z->path);
    uint8_t fix[12];
    for (int i = 0; i < 4; i++) {
        fix[i] = (uint8_t)(crc >> (8 * i));
        fix[4 + i] = fix[8 + i] = (uint8_t)(size >> (8 * i));
    }
    if (fseeko(z->f, (off_t)start + 14, SEEK_SET) != 0 || fwrite(fix, 1, 12, z->f) != 12 ||
        fseeko(z->f, 0, SEEK_END) != 0)
        mk_die(MK_EXIT_IO, "%s: write failed: %s", z->path, strerror(errno));
    size_t nl = strlen(name);
    buf *c = &z->central;
    put_le(c, 0x02014b50u, 4);
    put_le(c, 20, 2); /* made by */
    put_le(c, 20, 2); /* needed */
    put_le(c, 0, 2);
    put_le(c, 0, 2);
    put_le(c, 0, 4);
    put(c, fix, 12);
    put_le(c, nl, 2);
    put_le(c, 0, 2); /* extra */
    put_le(c, 0, 2); /* comment */
    put_le(c, 0, 2); /* disk */
    put_le(c, 0, 2); /* internal attributes */
    put_le(c, 0, 4); /* external attributes */
    put_le(c, start, 4);
    put(c, name, nl);
    z->n++;
}

static void member_bytes(zip_out *z, const char *name, const void *data, size_t n)
{
    uint64_t start = member_begin(z, name);
    out_write(z, data, n);
    member_end(z, name, start, crc32_update(0, data, n), n);
}

/* One checkpoint file of the given tensors. */
static void write_checkpoint(const char *path, const mk_src_tensor *const *ts, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char prefix[128];
    size_t pl = 0;
    for (const char *p = base; *p && *p != '.' && pl + 1 < sizeof prefix; p++)
        prefix[pl++] = *p == '-' || *p == '_' || (*p >= '0' && *p <= '9') ||
                               (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                           ? *p
                           : '_';
    prefix[pl] = '\0';
    if (!pl)
        snprintf(prefix, sizeof prefix, "archive");

    zip_out z = {.path = path};
    z.f = fopen(path, "wb");
    if (!z.f)
        mk_die(MK_EXIT_IO, "%s: cannot create: %s", path, strerror(errno));
    mk_partial_set(path);
    buf pkl = {0};
    state_dict_pickle(&pkl, ts, n);
    char *name = mk_printf("%s/data.pkl", prefix);
    member_bytes(&z, name, pkl.p, pkl.n);
    free(name);
    free(pkl.p);
    name = mk_printf("%s/byteorder", prefix);
    member_bytes(&z, name, "little", 6);
    free(name);
    uint8_t *chunk = mk_alloc(COPY_CHUNK, 1);
    for (size_t i = 0; i < n; i++) {
        const pa_tensor_desc *d = ts[i]->desc;
        name = mk_printf("%s/data/%zu", prefix, i);
        uint64_t start = member_begin(&z, name), size = d->end - d->begin;
        uint32_t crc = 0;
        for (uint64_t off = 0; off < size;) {
            size_t k = size - off < COPY_CHUNK ? (size_t)(size - off) : COPY_CHUNK;
            mk_parent_read(ts[i], chunk, off, k);
            crc = crc32_update(crc, chunk, k);
            out_write(&z, chunk, k);
            off += k;
        }
        member_end(&z, name, start, crc, size);
        free(name);
    }
    free(chunk);
    name = mk_printf("%s/version", prefix);
    member_bytes(&z, name, "3\n", 2);
    free(name);

    uint64_t cd_at = z.at;
    out_write(&z, z.central.p, z.central.n);
    buf e = {0};
    put_le(&e, 0x06054b50u, 4);
    put_le(&e, 0, 4); /* disks */
    put_le(&e, z.n, 2);
    put_le(&e, z.n, 2);
    put_le(&e, z.central.n, 4);
    put_le(&e, cd_at, 4);
    put_le(&e, 0, 2);
    if (z.n > 0xFFFF || cd_at > 0xFFFFFFFFu)
        mk_die(MK_EXIT_USAGE, "%s: too large (mkmodel torch writes no zip64)", path);
    out_write(&z, e.p, e.n);
    free(e.p);
    free(z.central.p);
    if (fclose(z.f) != 0)
        mk_die(MK_EXIT_IO, "%s: write failed: %s", path, strerror(errno));

    /* what we wrote must pass the analyzer's own strict reader */
    FILE *check = fopen(path, "rb");
    pa_st_header h;
    pa_error err;
    pa_error_clear(&err);
    if (!check || pa_torch_read(fileno(check), path, &h, &err) != PA_OK)
        mk_die(MK_EXIT_IO, "%s: the written file does not parse: %s", path,
               check ? err.msg : strerror(errno));
    if (h.n_tensors != n)
        mk_die(MK_EXIT_IO, "%s: %zu tensors read back, %zu written", path, h.n_tensors, n);
    pa_st_header_free(&h);
    fclose(check);
    mk_partial_set(NULL);
}

static void copy_if_present(const char *src, const char *out, const char *name)
{
    char *path = mk_join(src, name);
    if (access(path, F_OK) == 0)
        mk_copy_file(path, out, name);
    free(path);
}

int mk_torch_main(int argc, char **argv)
{
    if (argc != 4 || argv[2][0] == '-' || argv[3][0] == '-')
        mk_die(MK_EXIT_USAGE, "usage: mkmodel torch SRC_DIR OUT_DIR|OUT.pt");
    const char *src = argv[2], *out = argv[3];
    mk_parent p;
    mk_parent_load(&p, src);
    const mk_src_tensor **ts = mk_alloc(p.n, sizeof *ts);
    for (size_t i = 0; i < p.n; i++)
        ts[i] = &p.t[i];
    size_t len = strlen(out);
    struct stat sb;
    bool dir = (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) ||
               !(mk_ends_with(out, len, ".pt") || mk_ends_with(out, len, ".pth") ||
                 mk_ends_with(out, len, ".bin") || mk_ends_with(out, len, ".ckpt"));
    if (!dir) {
        write_checkpoint(out, ts, p.n);
    } else {
        mk_make_dir(out);
        copy_if_present(src, out, "config.json");
        copy_if_present(src, out, "tokenizer.json");
        copy_if_present(src, out, "tokenizer_config.json");
        if (p.n_shards == 1) {
            char *path = mk_join(out, "pytorch_model.bin");
            write_checkpoint(path, ts, p.n);
            free(path);
        } else {
            /* one checkpoint per source shard, and the index transformers writes */
            cJSON *index = cJSON_CreateObject(), *meta = cJSON_CreateObject(),
                  *map = cJSON_CreateObject();
            uint64_t total = 0;
            size_t at = 0;
            for (size_t s = 0; s < p.n_shards; s++) {
                size_t first = at;
                while (at < p.n && p.t[at].shard == &p.shards[s])
                    at++;
                char *file = mk_printf("pytorch_model-%05zu-of-%05zu.bin", s + 1, p.n_shards);
                char *path = mk_join(out, file);
                write_checkpoint(path, ts + first, at - first);
                for (size_t i = first; i < at; i++) {
                    cJSON_AddItemToObject(map, p.t[i].desc->name, cJSON_CreateString(file));
                    total += p.t[i].desc->end - p.t[i].desc->begin;
                }
                free(path);
                free(file);
            }
            cJSON_AddItemToObject(meta, "total_size", cJSON_CreateNumber((double)total));
            cJSON_AddItemToObject(index, "metadata", meta);
            cJSON_AddItemToObject(index, "weight_map", map);
            char *text = mk_json_pretty(index);
            mk_write_file(out, "pytorch_model.bin.index.json", text, strlen(text));
            free(text);
            cJSON_Delete(index);
        }
    }
    free(ts);
    mk_parent_free(&p);
    return 0;
}
