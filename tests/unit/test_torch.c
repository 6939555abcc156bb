/* Unit tests for PyTorch checkpoints (analyzer/torch.c): state dicts built in memory as torch.save
 * writes them (plain and zip64 directories, _metadata, parameters, shared storages), every refusal
 * with its status and message (imports of os.system and builtins.eval, calls of what is not a
 * tensor rebuild, truncation at every byte, memo misuse, storages and tensors out of bounds, huge
 * lengths, non-contiguous strides, compressed or missing members), then mkmodel's torch output
 * read back and fingerprinted against its safetensors source, as a directory unit (single and
 * sharded) and as a lone file. */
#include "check.h"
#include "provfs/analyzer.h"
#include "sha.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LABEL "mem.pt"

/* ---------------------------------------------------------------- bytes */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void wb(wbuf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void wle(wbuf *b, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    wb(b, t, (size_t)n);
}

static void op(wbuf *b, uint8_t c)
{
    wb(b, &c, 1);
}

/* ---------------------------------------------------------------- a zip writer */

typedef struct zmember {
    const char *name;
    const void *data;
    size_t len;
    uint16_t method;
} zmember;

/* Stored members (method as given), local headers then central directory; zip64: saturated
 * 32-bit fields with the values in zip64 extra fields, and the zip64 end records. */
static wbuf mkzip(const zmember *m, size_t n, bool zip64)
{
    wbuf z = {0}, c = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t at = z.n;
        size_t nl = strlen(m[i].name);
        wle(&z, 0x04034b50u, 4);
        wle(&z, 20, 2);
        wle(&z, 0, 2);
        wle(&z, m[i].method, 2);
        wle(&z, 0, 4);
        wle(&z, 0, 4);
        wle(&z, m[i].len, 4);
        wle(&z, m[i].len, 4);
        wle(&z, nl, 2);
        wle(&z, 0, 2);
        wb(&z, m[i].name, nl);
        wb(&z, m[i].data, m[i].len);
        wle(&c, 0x02014b50u, 4);
        wle(&c, 45, 2);
        wle(&c, 45, 2);
        wle(&c, 0, 2);
        wle(&c, m[i].method, 2);
        wle(&c, 0, 4);
        wle(&c, 0, 4);
        wle(&c, zip64 ? 0xFFFFFFFFu : m[i].len, 4);
        wle(&c, zip64 ? 0xFFFFFFFFu : m[i].len, 4);
        wle(&c, nl, 2);
        wle(&c, zip64 ? 28 : 0, 2);
        wle(&c, 0, 2);
        wle(&c, 0, 2);
        wle(&c, 0, 2);
        wle(&c, 0, 4);
        wle(&c, zip64 ? 0xFFFFFFFFu : at, 4);
        wb(&c, m[i].name, nl);
        if (zip64) {
            wle(&c, 0x0001, 2);
            wle(&c, 24, 2);
            wle(&c, m[i].len, 8);
            wle(&c, m[i].len, 8);
            wle(&c, at, 8);
        }
    }
    uint64_t cd_at = z.n;
    wb(&z, c.p, c.n);
    if (zip64) {
        uint64_t rec = z.n;
        wle(&z, 0x06064b50u, 4);
        wle(&z, 44, 8);
        wle(&z, 45, 2);
        wle(&z, 45, 2);
        wle(&z, 0, 4);
        wle(&z, 0, 4);
        wle(&z, n, 8);
        wle(&z, n, 8);
        wle(&z, c.n, 8);
        wle(&z, cd_at, 8);
        wle(&z, 0x07064b50u, 4);
        wle(&z, 0, 4);
        wle(&z, rec, 8);
        wle(&z, 1, 4);
    }
    wle(&z, 0x06054b50u, 4);
    wle(&z, 0, 4);
    wle(&z, zip64 ? 0xFFFF : n, 2);
    wle(&z, zip64 ? 0xFFFF : n, 2);
    wle(&z, zip64 ? 0xFFFFFFFFu : c.n, 4);
    wle(&z, zip64 ? 0xFFFFFFFFu : cd_at, 4);
    wle(&z, 0, 2);
    free(c.p);
    return z;
}

/* ---------------------------------------------------------------- a pickle writer */

static void p_str(wbuf *b, const char *s)
{
    op(b, 'X');
    wle(b, strlen(s), 4);
    wb(b, s, strlen(s));
}

static void p_int(wbuf *b, uint64_t v)
{
    if (v < 256) {
        op(b, 'K');
        wle(b, v, 1);
    } else {
        op(b, 'J');
        wle(b, v, 4);
    }
}

static void p_global(wbuf *b, const char *module, const char *name)
{
    op(b, 'c');
    wb(b, module, strlen(module));
    op(b, '\n');
    wb(b, name, strlen(name));
    op(b, '\n');
}

static void p_ints(wbuf *b, const uint64_t *v, int n)
{
    op(b, '(');
    for (int i = 0; i < n; i++)
        p_int(b, v[i]);
    op(b, 't');
}

/* _rebuild_tensor_v2(storage KEY of TYPE with numel elements, offset, shape, stride, False,
 * OrderedDict()) on the stack. */
static void p_tensor(wbuf *b, const char *type, const char *key, uint64_t numel, uint64_t offset,
                     const uint64_t *shape, const uint64_t *stride, int nd)
{
    p_global(b, "torch._utils", "_rebuild_tensor_v2");
    op(b, '(');
    op(b, '(');
    p_str(b, "storage");
    p_global(b, "torch", type);
    p_str(b, key);
    p_str(b, "cpu");
    p_int(b, numel);
    op(b, 't');
    op(b, 'Q');
    p_int(b, offset);
    p_ints(b, shape, nd);
    p_ints(b, stride, nd);
    op(b, 0x89);
    p_global(b, "collections", "OrderedDict");
    op(b, ')');
    op(b, 'R');
    op(b, 't');
    op(b, 'R');
}

static void p_begin(wbuf *b)
{
    op(b, 0x80);
    op(b, 2);
    p_global(b, "collections", "OrderedDict");
    op(b, 'q');
    op(b, 0);
    op(b, ')');
    op(b, 'R');
    op(b, '(');
}

static void p_end(wbuf *b)
{
    op(b, 'u');
    op(b, '.');
}

static const float six[6] = {1, 2, 3, 4, 5, 6};

/* A checkpoint of data.pkl and storage 0 holding six floats (and storage 1 when given). */
static wbuf checkpoint(const wbuf *pkl, const void *s1, size_t s1_len)
{
    zmember m[] = {
        {"archive/data.pkl", pkl->p, pkl->n, 0}, {"archive/byteorder", "little", 6, 0},
        {"archive/data/0", six, sizeof six, 0},  {"archive/version", "3\n", 2, 0},
        {"archive/data/1", s1, s1_len, 0},
    };
    return mkzip(m, s1 ? 5 : 4, false);
}

static pa_status parse(const wbuf *file, pa_st_header *h, pa_error *err)
{
    pa_error_clear(err);
    return pa_torch_parse(file->p, file->n, LABEL, h, err);
}

/* data.pkl pkl must be refused with status want and a one-line message holding needle. */
static void expect_refused(const char *what, const wbuf *pkl, pa_status want, const char *needle)
{
    wbuf f = checkpoint(pkl, NULL, 0);
    pa_st_header h;
    pa_error err;
    pa_status st = parse(&f, &h, &err);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", what, pa_status_name(st),
              pa_status_name(want), err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg,
              needle);
    CHECK_MSG(!strchr(err.msg, '\n'), "%s: message on more than one line", what);
    CHECK(h.n_tensors == 0 && h.tensors == NULL);
    free(f.p);
}

/* ---------------------------------------------------------------- accepted state dicts */

static void test_minimal(bool zip64)
{
    wbuf pk = {0};
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){2, 3}, (uint64_t[]){3, 1}, 2);
    p_str(&pk, "b");
    p_tensor(&pk, "FloatStorage", "0", 6, 4, (uint64_t[]){2}, (uint64_t[]){1}, 1);
    p_end(&pk);
    zmember m[] = {{"archive/data.pkl", pk.p, pk.n, 0}, {"archive/data/0", six, sizeof six, 0}};
    wbuf f = mkzip(m, 2, zip64);
    pa_st_header h;
    pa_error err;
    pa_status st = parse(&f, &h, &err);
    CHECK_MSG(st == PA_OK, "minimal (zip64 %d): %s", zip64, err.msg);
    CHECK_INT(h.n_tensors, 2);
    CHECK_INT(h.data_offset, 0);
    CHECK_INT(h.data_len, f.n);
    if (h.n_tensors == 2) {
        /* sorted by begin: w at the storage's start, b four floats in */
        const pa_tensor_desc *w = &h.tensors[0], *b = &h.tensors[1];
        CHECK_STR(w->name, "w");
        CHECK_STR(b->name, "b");
        CHECK(w->dtype == PA_DT_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3);
        CHECK_INT(w->numel, 6);
        CHECK_INT(w->end - w->begin, 24);
        CHECK_INT(b->begin - w->begin, 16);
        CHECK(w->end <= f.n && memcmp(f.p + w->begin, six, sizeof six) == 0);
        CHECK(b->end <= f.n && memcmp(f.p + b->begin, six + 4, 8) == 0);
    }
    pa_st_header_free(&h);
    free(f.p);
    free(pk.p);
}

/* What transformers writes: nn.Parameter wrappers, OrderedDict state (_metadata) via BUILD,
 * memo puts and gets, a 0-dim tensor, a size-1 dimension with an odd stride, a shared storage. */
static void test_transformers_like(void)
{
    wbuf pk = {0};
    p_begin(&pk);
    p_str(&pk, "layer.weight");
    p_global(&pk, "torch._utils", "_rebuild_parameter");
    op(&pk, '(');
    p_tensor(&pk, "HalfStorage", "1", 4, 0, (uint64_t[]){1, 4}, (uint64_t[]){7, 1}, 2);
    op(&pk, 0x88);
    op(&pk, 'h');
    op(&pk, 0); /* BINGET 0: OrderedDict */
    op(&pk, ')');
    op(&pk, 'R');
    op(&pk, 't');
    op(&pk, 'R');
    op(&pk, 'q');
    op(&pk, 1);
    p_str(&pk, "scalar");
    p_tensor(&pk, "FloatStorage", "0", 6, 5, NULL, NULL, 0);
    p_str(&pk, "tied");
    op(&pk, 'h');
    op(&pk, 1); /* the same tensor again */
    op(&pk, 'u');
    /* state: {'_metadata': OrderedDict({'': {'version': 1}})} */
    op(&pk, '}');
    p_str(&pk, "_metadata");
    op(&pk, 'h');
    op(&pk, 0);
    op(&pk, ')');
    op(&pk, 'R');
    p_str(&pk, "");
    op(&pk, '}');
    p_str(&pk, "version");
    p_int(&pk, 1);
    op(&pk, 's');
    op(&pk, 's');
    op(&pk, 's');
    op(&pk, 'b');
    op(&pk, '.');
    const uint16_t halves[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
    wbuf f = checkpoint(&pk, halves, sizeof halves);
    pa_st_header h;
    pa_error err;
    pa_status st = parse(&f, &h, &err);
    CHECK_MSG(st == PA_OK, "transformers-like: %s", err.msg);
    CHECK_INT(h.n_tensors, 3);
    for (size_t i = 0; i < h.n_tensors; i++) {
        const pa_tensor_desc *t = &h.tensors[i];
        if (strcmp(t->name, "scalar") == 0) {
            CHECK(t->dtype == PA_DT_F32 && t->ndim == 0 && t->numel == 1);
            CHECK(t->end <= f.n && memcmp(f.p + t->begin, six + 5, 4) == 0);
        } else {
            CHECK(t->dtype == PA_DT_F16 && t->ndim == 2 && t->numel == 4);
            CHECK(t->end <= f.n && memcmp(f.p + t->begin, halves, sizeof halves) == 0);
        }
    }
    pa_st_header_free(&h);
    free(f.p);
    free(pk.p);
}

/* ---------------------------------------------------------------- refusals */

/* pa_unsafe_global: only the analyzer's own wording, the global after the last space. */
static void test_unsafe_global_text(void)
{
    char g[64];
    const char *tail = ", which a state dict does not need: refused (nothing was run)";
    char msg[512];
    snprintf(msg, sizeof msg, "/m/x.bin: data.pkl byte 2: unsafe pickle: imports posix.system%s",
             tail);
    CHECK(pa_unsafe_global(msg, g, sizeof g) && strcmp(g, "posix.system") == 0);
    /* a path that imitates the wording does not change what is found */
    snprintf(msg, sizeof msg,
             "/unsafe pickle: imports a.b%s/x.bin: data.pkl byte 2: unsafe pickle: imports "
             "os.system%s",
             tail, tail);
    CHECK(pa_unsafe_global(msg, g, sizeof g) && strcmp(g, "os.system") == 0);
    snprintf(msg, sizeof msg, "/m/x.bin: data.pkl byte 2: unsafe pickle: imports a\\x20b.c%s",
             tail);
    CHECK(pa_unsafe_global(msg, g, sizeof g) && strcmp(g, "a\\x20b.c") == 0);
    /* anything else is not an unsafe pickle */
    CHECK(!pa_unsafe_global("/m/x.bin: bad magic", g, sizeof g) && g[0] == '\0');
    snprintf(msg, sizeof msg, "/m/x.bin: unsafe pickle: imports %s", tail);
    CHECK(!pa_unsafe_global(msg, g, sizeof g));
    snprintf(msg, sizeof msg, "/m/x.bin: imports os.system%s", tail);
    CHECK(!pa_unsafe_global(msg, g, sizeof g));
    snprintf(msg, sizeof msg, "/m/x.bin: unsafe pickle: imports os.sys:tem%s", tail);
    CHECK(!pa_unsafe_global(msg, g, sizeof g));
    CHECK(!pa_unsafe_global(NULL, g, sizeof g));
}

static void test_hostile_globals(void)
{
    struct {
        const char *module, *name;
    } bad[] = {{"os", "system"},        {"builtins", "eval"}, {"posix", "system"},
               {"subprocess", "Popen"}, {"torch", "load"},    {"collections", "OrderedDictX"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wbuf pk = {0};
        op(&pk, 0x80);
        op(&pk, 2);
        p_global(&pk, bad[i].module, bad[i].name);
        p_str(&pk, "touch /tmp/provfs-pwned");
        op(&pk, 0x85);
        op(&pk, 'R');
        op(&pk, '.');
        char needle[80];
        snprintf(needle, sizeof needle, "imports %s.%s", bad[i].module, bad[i].name);
        expect_refused(needle, &pk, PA_E_UNSAFE, needle);
        /* the global comes back out of the message */
        wbuf f = checkpoint(&pk, NULL, 0);
        pa_st_header h;
        pa_error err;
        CHECK(parse(&f, &h, &err) == PA_E_UNSAFE);
        char g[200];
        CHECK_MSG(pa_unsafe_global(err.msg, g, sizeof g) && strcmp(g, needle + 8) == 0,
                  "global of '%s': '%s'", err.msg, g);
        free(f.p);
        free(pk.p);
    }
    /* the same through STACK_GLOBAL (protocol 4) */
    wbuf pk = {0};
    op(&pk, 0x80);
    op(&pk, 4);
    op(&pk, 0x8c);
    op(&pk, 8);
    wb(&pk, "builtins", 8);
    op(&pk, 0x8c);
    op(&pk, 4);
    wb(&pk, "eval", 4);
    op(&pk, 0x93);
    op(&pk, '.');
    expect_refused("stack global", &pk, PA_E_UNSAFE, "imports builtins.eval");
    free(pk.p);
    /* INST, OBJ, NEWOBJ, EXT1: opcodes that build objects of any class */
    const uint8_t ops[] = {'i', 'o', 0x81, 0x82, 0x92, 'c' + 0x80};
    for (size_t i = 0; i < sizeof ops; i++) {
        wbuf q = {0};
        op(&q, 0x80);
        op(&q, 2);
        op(&q, ops[i]);
        wb(&q, "os\nsystem\n", 10);
        expect_refused("object opcode", &q, PA_E_UNSUPPORTED, "refused");
        free(q.p);
    }
}

static void test_bad_calls(void)
{
    wbuf pk = {0};
    /* REDUCE on an allowed name that is not a tensor rebuild: a storage type */
    op(&pk, 0x80);
    op(&pk, 2);
    p_global(&pk, "torch", "FloatStorage");
    p_int(&pk, 10);
    op(&pk, 0x85);
    op(&pk, 'R');
    op(&pk, '.');
    expect_refused("call of a storage type", &pk, PA_E_UNSUPPORTED, "calls FloatStorage");
    pk.n = 0;
    /* REDUCE on a string */
    op(&pk, 0x80);
    op(&pk, 2);
    p_str(&pk, "os.system");
    op(&pk, ')');
    op(&pk, 'R');
    op(&pk, '.');
    expect_refused("call of a str", &pk, PA_E_UNSUPPORTED, "calls a str");
    pk.n = 0;
    /* OrderedDict with arguments */
    op(&pk, 0x80);
    op(&pk, 2);
    p_global(&pk, "collections", "OrderedDict");
    op(&pk, ']');
    op(&pk, 0x85);
    op(&pk, 'R');
    op(&pk, '.');
    expect_refused("OrderedDict(list)", &pk, PA_E_FORMAT, "unexpected arguments");
    pk.n = 0;
    /* BUILD on a tensor */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){6}, (uint64_t[]){1}, 1);
    op(&pk, '}');
    op(&pk, 'b');
    p_end(&pk);
    expect_refused("BUILD on a tensor", &pk, PA_E_UNSUPPORTED, "BUILD on a tensor");
    pk.n = 0;
    /* a persistent id that is not a storage reference */
    op(&pk, 0x80);
    op(&pk, 2);
    p_str(&pk, "rm -rf /");
    op(&pk, 'Q');
    op(&pk, '.');
    expect_refused("persistent id", &pk, PA_E_UNSUPPORTED, "persistent id");
    pk.n = 0;
    /* a storage key that names a path */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "../../etc/passwd", 6, 0, (uint64_t[]){6}, (uint64_t[]){1}, 1);
    p_end(&pk);
    expect_refused("storage key", &pk, PA_E_FORMAT, "not a storage number");
    pk.n = 0;
    /* not a dict */
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, ']');
    op(&pk, '.');
    expect_refused("a list", &pk, PA_E_UNSUPPORTED, "holds a list");
    pk.n = 0;
    /* a dict without tensors */
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, '}');
    op(&pk, '.');
    expect_refused("no tensors", &pk, PA_E_UNSUPPORTED, "without tensors");
    free(pk.p);
}

static void test_bounds(void)
{
    wbuf pk = {0};
    /* the storage says 100 floats, its member holds 6 */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 100, 0, (uint64_t[]){100}, (uint64_t[]){1}, 1);
    p_end(&pk);
    expect_refused("storage beyond member", &pk, PA_E_FORMAT, "larger than its member");
    pk.n = 0;
    /* the tensor runs past its storage */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 4, (uint64_t[]){3}, (uint64_t[]){1}, 1);
    p_end(&pk);
    expect_refused("offset beyond storage", &pk, PA_E_FORMAT, "at offset 4 of a storage of 6");
    pk.n = 0;
    /* a storage member that does not exist */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "7", 6, 0, (uint64_t[]){6}, (uint64_t[]){1}, 1);
    p_end(&pk);
    expect_refused("missing member", &pk, PA_E_FORMAT, "no zip member archive/data/7");
    pk.n = 0;
    /* transposed: not contiguous */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){3, 2}, (uint64_t[]){1, 3}, 2);
    p_end(&pk);
    expect_refused("non-contiguous", &pk, PA_E_UNSUPPORTED, "not contiguous");
    pk.n = 0;
    /* a shape whose product overflows */
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){0x7fffffff, 0x7fffffff, 0x7fffffff},
             (uint64_t[]){1, 1, 1}, 3);
    p_end(&pk);
    expect_refused("shape overflow", &pk, PA_E_FORMAT, "overflows");
    pk.n = 0;
    /* a string of 4 GiB - 16 bytes */
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 'X');
    wle(&pk, 0xFFFFFFF0u, 4);
    op(&pk, '.');
    expect_refused("huge string", &pk, PA_E_LIMIT, "a string of 4294967280 bytes");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 0x8d);
    wle(&pk, UINT64_MAX, 8);
    op(&pk, '.');
    expect_refused("huge string8", &pk, PA_E_LIMIT, "a string of");
    pk.n = 0;
    /* a string longer than the rest of data.pkl */
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 'X');
    wle(&pk, 1000, 4);
    op(&pk, '.');
    expect_refused("string past the end", &pk, PA_E_FORMAT, "truncated");
    pk.n = 0;
    /* memo */
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 'h');
    op(&pk, 5);
    op(&pk, '.');
    expect_refused("memo get", &pk, PA_E_FORMAT, "memo index 5 was never set");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, '}');
    op(&pk, 'r');
    wle(&pk, 0xFFFFFFFFu, 4);
    op(&pk, '.');
    expect_refused("memo put", &pk, PA_E_LIMIT, "memo index 4294967295");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 'j');
    wle(&pk, 0x7FFFFFFFu, 4);
    op(&pk, '.');
    expect_refused("long memo get", &pk, PA_E_FORMAT, "never set");
    pk.n = 0;
    /* marks nested too deep, an empty stack, a LONG1 of 200 bytes */
    op(&pk, 0x80);
    op(&pk, 2);
    for (int i = 0; i < 5000; i++)
        op(&pk, '(');
    op(&pk, '.');
    expect_refused("marks", &pk, PA_E_LIMIT, "nested marks");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 'R');
    expect_refused("underflow", &pk, PA_E_FORMAT, "stack underflow");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 2);
    op(&pk, 0x8a);
    op(&pk, 200);
    op(&pk, '.');
    expect_refused("long1", &pk, PA_E_LIMIT, "an integer of 200 bytes");
    pk.n = 0;
    op(&pk, 0x80);
    op(&pk, 9);
    expect_refused("protocol", &pk, PA_E_UNSUPPORTED, "pickle protocol 9");
    pk.n = 0;
    /* one long name and one tensor put in the memo, then referenced by 200 entries: the names'
     * bytes would be copied 200 times */
    p_begin(&pk);
    char longname[1001];
    memset(longname, 'n', 1000);
    longname[1000] = '\0';
    p_str(&pk, longname);
    op(&pk, 'q');
    op(&pk, 1);
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){6}, (uint64_t[]){1}, 1);
    op(&pk, 'q');
    op(&pk, 2);
    for (int i = 0; i < 200; i++) {
        op(&pk, 'h');
        op(&pk, 1);
        op(&pk, 'h');
        op(&pk, 2);
    }
    p_end(&pk);
    expect_refused("names through the memo", &pk, PA_E_LIMIT, "bytes of names");
    free(pk.p);
}

/* Every prefix of a valid data.pkl is refused (and none crashes or leaks). */
static void test_truncation(void)
{
    wbuf pk = {0};
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){2, 3}, (uint64_t[]){3, 1}, 2);
    p_end(&pk);
    int accepted = 0;
    for (size_t n = 0; n < pk.n; n++) {
        wbuf cut = {pk.p, n, n};
        wbuf f = checkpoint(&cut, NULL, 0);
        pa_st_header h;
        pa_error err;
        if (parse(&f, &h, &err) == PA_OK) {
            accepted++;
            pa_st_header_free(&h);
        } else {
            CHECK_MSG(err.msg[0] && h.tensors == NULL, "cut at %zu: no message", n);
        }
        free(f.p);
    }
    CHECK_INT(accepted, 0);
    /* the whole pickle parses */
    wbuf f = checkpoint(&pk, NULL, 0);
    pa_st_header h;
    pa_error err;
    CHECK_MSG(parse(&f, &h, &err) == PA_OK, "whole: %s", err.msg);
    pa_st_header_free(&h);
    /* and every prefix of the whole archive is refused: a copy in progress */
    size_t refused = 0;
    for (size_t n = 0; n < f.n; n++) {
        wbuf cut = {f.p, n, n};
        if (parse(&cut, &h, &err) != PA_OK)
            refused++;
        else
            pa_st_header_free(&h);
    }
    CHECK_INT(refused, f.n);
    wbuf half = {f.p, f.n / 2, f.n / 2};
    CHECK(parse(&half, &h, &err) == PA_E_FORMAT && strstr(err.msg, "truncated archive"));
    free(f.p);
    free(pk.p);
}

static void test_zip_refusals(void)
{
    wbuf pk = {0};
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){6}, (uint64_t[]){1}, 1);
    p_end(&pk);
    pa_st_header h;
    pa_error err;
    struct {
        const char *what;
        zmember m[3];
        size_t n;
        pa_status want;
        const char *needle;
    } cases[] = {
        {"no data.pkl",
         {{"archive/data/0", six, sizeof six, 0}},
         1,
         PA_E_UNSUPPORTED,
         "without data.pkl"},
        {"compressed",
         {{"archive/data.pkl", pk.p, pk.n, 8}, {"archive/data/0", six, 24, 0}},
         2,
         PA_E_UNSUPPORTED,
         "compressed (method 8)"},
        {"two pickles",
         {{"a/data.pkl", pk.p, pk.n, 0}, {"b/data.pkl", pk.p, pk.n, 0}, {"a/data/0", six, 24, 0}},
         3,
         PA_E_FORMAT,
         "two data.pkl"},
        {"same name twice",
         {{"archive/data.pkl", pk.p, pk.n, 0},
          {"archive/data/0", six, 24, 0},
          {"archive/data/0", six, 8, 0}},
         3,
         PA_E_FORMAT,
         "two zip members named"},
        {"big endian",
         {{"archive/data.pkl", pk.p, pk.n, 0},
          {"archive/byteorder", "big", 3, 0},
          {"archive/data/0", six, 24, 0}},
         3,
         PA_E_UNSUPPORTED,
         "byte order"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        wbuf f = mkzip(cases[i].m, cases[i].n, false);
        pa_status st = parse(&f, &h, &err);
        CHECK_MSG(st == cases[i].want && strstr(err.msg, cases[i].needle), "%s: %s (%s)",
                  cases[i].what, pa_status_name(st), err.msg);
        free(f.p);
    }
    /* a central directory entry pointing into the directory itself */
    zmember m[] = {{"archive/data.pkl", pk.p, pk.n, 0}, {"archive/data/0", six, 24, 0}};
    wbuf f = mkzip(m, 2, false);
    size_t cd = f.n - 22 - (46 + 16) - (46 + 14);
    f.p[cd + 46 + 16 + 42] ^= 0x55; /* local header offset of archive/data/0 */
    CHECK(parse(&f, &h, &err) == PA_E_FORMAT && strstr(err.msg, "archive/data/0"));
    free(f.p);
    /* zip64: a saturated size without its zip64 extra field (the name at the end of the
     * directory buffer is not NUL terminated: the message must stop at its length) */
    f = mkzip(m, 2, true);
    int patched = 0;
    for (size_t i = 0; i + 4 <= f.n; i++)
        if (memcmp(f.p + i, "\x01\x00\x18\x00", 4) == 0) {
            f.p[i] = 0x02;
            patched++;
        }
    CHECK_INT(patched, 2);
    CHECK(parse(&f, &h, &err) == PA_E_FORMAT && strstr(err.msg, "lacks its zip64 sizes"));
    free(f.p);
    /* not a zip at all, and an empty file */
    wbuf junk = {(uint8_t *)"PK\x03\x04 not really a zip archive", 30, 30};
    CHECK(parse(&junk, &h, &err) == PA_E_FORMAT);
    wbuf empty = {(uint8_t *)"", 0, 0};
    CHECK(parse(&empty, &h, &err) == PA_E_FORMAT && strstr(err.msg, "too short"));
    free(pk.p);

    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                     0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80};
    const char *why = pa_torch_legacy(legacy, sizeof legacy);
    CHECK(why && strstr(why, "legacy torch.save"));
    CHECK(pa_torch_legacy((const uint8_t *)"\x80\x04\x95", 3) != NULL);
    CHECK(pa_torch_legacy((const uint8_t *)"GGUF", 4) == NULL);
}

static void test_names(void)
{
    CHECK(pa_unit_weights_name("model.safetensors"));
    CHECK(pa_unit_weights_name("model-00001-of-00002.safetensors"));
    CHECK(pa_unit_weights_name("model.safetensors.index.json"));
    CHECK(pa_unit_weights_name("pytorch_model.bin"));
    CHECK(pa_unit_weights_name("pytorch_model-00001-of-00002.bin"));
    CHECK(pa_unit_weights_name("pytorch_model.bin.index.json"));
    CHECK(!pa_unit_weights_name("pytorch_modelX.bin"));
    CHECK(!pa_unit_weights_name("training_args.bin"));
    CHECK(!pa_unit_weights_name("optimizer.pt"));
    CHECK(!pa_unit_weights_name(".model.safetensors"));
    CHECK(!pa_unit_weights_name("config.json"));
    /* variants (transformers' variant= argument) */
    CHECK(pa_unit_weights_name("pytorch_model.fp16.bin"));
    CHECK(pa_unit_weights_name("pytorch_model.bin.index.fp16.json"));
    CHECK(pa_unit_weights_name("model.safetensors.index.fp16.json"));
    CHECK(!pa_unit_weights_name("model.safetensors.index.json.bak"));
}

static bool wname(const char *name, pa_weights_name_kind kind, const char *variant)
{
    const char *v = (const char *)1;
    size_t vl = 99;
    pa_weights_name_kind k = pa_weights_name(name, &v, &vl);
    bool ok = k == kind && (variant ? v && vl == strlen(variant) && memcmp(v, variant, vl) == 0
                                    : v == NULL && vl == 0);
    CHECK_MSG(ok, "%s: kind %d variant '%.*s'", name, (int)k, v ? (int)vl : 0, v ? v : "");
    return ok;
}

/* choose(names...): the choice over a NULL-terminated list. */
static pa_weights_choice choose(const char *const *names)
{
    size_t n = 0;
    while (names[n])
        n++;
    pa_weights_choice c;
    pa_weights_choose(names, n, &c);
    return c;
}

static void test_weights_choice(void)
{
    wname("model.safetensors", PA_WN_SINGLE, NULL);
    wname("model.fp16.safetensors", PA_WN_SINGLE, "fp16");
    wname("model.safetensors.index.json", PA_WN_INDEX, NULL);
    wname("model.safetensors.index.fp16.json", PA_WN_INDEX, "fp16");
    wname("model-00001-of-00002.safetensors", PA_WN_SHARD, NULL);
    wname("model-00001-of-00002.fp16.safetensors", PA_WN_SHARD, "fp16");
    wname("pytorch_model.bin", PA_WN_SINGLE, NULL);
    wname("pytorch_model.fp16.bin", PA_WN_SINGLE, "fp16");
    wname("pytorch_model.bin.index.json", PA_WN_INDEX, NULL);
    wname("pytorch_model.bin.index.fp16.json", PA_WN_INDEX, "fp16");
    wname("pytorch_model-00001-of-00003.bin", PA_WN_SHARD, NULL);
    wname("pytorch_model-00001-of-00003.ema.bin", PA_WN_SHARD, "ema");
    wname("adapter_model.safetensors", PA_WN_OTHER, NULL);
    wname("model..safetensors", PA_WN_OTHER, NULL);
    wname("model-1-of-.safetensors", PA_WN_OTHER, NULL);
    wname("model-x-of-2.safetensors", PA_WN_OTHER, NULL);
    wname("model", PA_WN_OTHER, NULL);
    wname("", PA_WN_OTHER, NULL);

    /* a re-save unsharded after a sharded save: the stale index is not read */
    pa_weights_choice c = choose((const char *[]){"config.json", "model-00001-of-00002.safetensors",
                                                  "model.safetensors", "model.safetensors.index.json",
                                                  NULL});
    CHECK(c.kind == PA_WK_SINGLE && c.name && strcmp(c.name, "model.safetensors") == 0);
    CHECK(c.stale_index && strcmp(c.stale_index, "model.safetensors.index.json") == 0);
    CHECK(!c.variant && c.n_other_variants == 0);
    /* safetensors before pickles, no variant before variants */
    c = choose((const char *[]){"pytorch_model.bin", "model.safetensors.index.json",
                                "model.fp16.safetensors", NULL});
    CHECK(c.kind == PA_WK_INDEX && strcmp(c.name, "model.safetensors.index.json") == 0);
    CHECK(!c.stale_index && c.n_other_variants == 1);
    c = choose((const char *[]){"pytorch_model.bin", "model.fp16.safetensors", NULL});
    CHECK(c.kind == PA_WK_SINGLE && strcmp(c.name, "pytorch_model.bin") == 0);
    /* only variants: the lexically first */
    const char *only[] = {"model.safetensors.index.fp16.json", "model-00001-of-00002.fp16.safetensors",
                          "model-00002-of-00002.fp16.safetensors", "model.bf16.safetensors", NULL};
    c = choose(only);
    CHECK(c.kind == PA_WK_SINGLE && strcmp(c.name, "model.bf16.safetensors") == 0);
    CHECK(c.variant && c.variant_len == 4 && memcmp(c.variant, "bf16", 4) == 0);
    CHECK_INT(c.n_other_variants, 3);
    CHECK(!pa_weights_variant_unit(only, 4, "model.bf16.safetensors"));
    CHECK(!pa_weights_variant_unit(only, 4, "model-00001-of-00002.fp16.safetensors"));
    const char *var[] = {"model.safetensors", "model.fp16.safetensors", "pytorch_model.fp16.bin",
                         "config.json"};
    CHECK(pa_weights_variant_unit(var, 4, "model.fp16.safetensors"));
    CHECK(pa_weights_variant_unit(var, 4, "pytorch_model.fp16.bin"));
    CHECK(!pa_weights_variant_unit(var, 4, "model.safetensors"));
    CHECK(!pa_weights_variant_unit(var, 4, "config.json"));
    char *notes = pa_weights_notes(var, 4);
    CHECK_MSG(notes && strstr(notes, "2 file(s) of other variants") &&
                  strstr(notes, "model.fp16.safetensors (a model of its own)") &&
                  !strstr(notes, "ignored"),
              "%s", notes ? notes : "(null)");
    free(notes);
    const char *stale[] = {"model.safetensors", "model.safetensors.index.json"};
    notes = pa_weights_notes(stale, 2);
    CHECK_MSG(notes && strstr(notes, "model.safetensors.index.json ignored") && !strchr(notes, '\n'),
              "%s", notes ? notes : "(null)");
    free(notes);
    CHECK(pa_weights_notes(stale, 1) == NULL);
    /* no transformers name: every safetensors file, else every pytorch_model*.bin */
    c = choose((const char *[]){"a.safetensors", "b.safetensors", NULL});
    CHECK(c.kind == PA_WK_ALL_ST && !c.name);
    c = choose((const char *[]){"pytorch_model-00001-of-00002.bin", NULL});
    CHECK(c.kind == PA_WK_ALL_BIN);
    c = choose((const char *[]){"config.json", NULL});
    CHECK(c.kind == PA_WK_NONE);
}

/* ---------------------------------------------------------------- mkmodel's torch output */

static char tmp[256];

static int sh(const char *fmt, ...)
{
    char args[1024], cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && %s", tmp, args);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "command failed: %s", cmd);
    return rc;
}

static pa_fingerprint *fp_of(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fingerprint_path(path, NULL, &fp, &err);
    CHECK_MSG(st == PA_OK, "fingerprint %s: %s", name, err.msg);
    return fp;
}

static void expect_verdict(const char *a, const char *b, pa_verdict want, const char *format)
{
    pa_fingerprint *fa = fp_of(a), *fb = fp_of(b);
    if (fa && fb) {
        pa_compare_result r;
        pa_compare(fa, fb, &r);
        CHECK_MSG(r.verdict == want, "%s vs %s: %s, want %s (%s)", a, b, pa_verdict_name(r.verdict),
                  pa_verdict_name(want), r.reason);
        CHECK_STR(pa_fp_format(fb), format);
        CHECK_INT(pa_fp_n_tensors(fa), pa_fp_n_tensors(fb));
        CHECK_INT(pa_fp_n_params(fa), pa_fp_n_params(fb));
        /* the embedding's shape, as the weights give it, is the config's */
        uint64_t va = 0, ha = 0, vb = 0, hb = 0;
        const pa_mfi *m = pa_fp_mfi(fa);
        CHECK(pa_fp_embed_shape(fa, &va, &ha) && pa_fp_embed_shape(fb, &vb, &hb));
        CHECK(va == vb && ha == hb && va > 0 && ha > 0);
        if (m)
            CHECK(m->vocab_size == (int64_t)va && m->hidden_size == (int64_t)ha);
    }
    pa_fingerprint_free(fa);
    pa_fingerprint_free(fb);
}

static void test_mkmodel(void)
{
    const char *mk = getenv("MKMODEL");
    if (!mk) {
        fprintf(stderr, "MKMODEL not set: skipping the mkmodel checks\n");
        return;
    }
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp, sizeof tmp, "%s/provfs-torch-XXXXXX", base);
    if (!mkdtemp(tmp)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    const char *small = "--layers 2 --hidden 64 --heads 4 --inter 128 --vocab 512";
    if (sh("%s create base --seed 11 %s --dtype bf16", mk, small) ||
        sh("%s create sharded --seed 11 %s --shards 3", mk, small) ||
        sh("%s derive base ft --kind finetune --seed 3", mk) ||
        sh("%s create other --seed 12 %s --dtype bf16", mk, small) ||
        sh("%s torch base base-torch && %s torch sharded sharded-torch", mk, mk) ||
        sh("%s torch ft ft-torch && %s torch other other-torch", mk, mk) ||
        sh("%s torch base lone.pt && %s torch sharded lone-sharded.pth", mk, mk))
        return;
    CHECK(sh("test -f sharded-torch/pytorch_model-00003-of-00003.bin -a "
             "-f sharded-torch/pytorch_model.bin.index.json") == 0);

    /* the headers agree with the safetensors source, tensor by tensor */
    char path[512];
    snprintf(path, sizeof path, "%s/base-torch/pytorch_model.bin", tmp);
    FILE *f = fopen(path, "rb");
    snprintf(path, sizeof path, "%s/base/model.safetensors", tmp);
    FILE *g = fopen(path, "rb");
    pa_st_header ht = {0}, hs = {0};
    pa_error err = {0};
    CHECK(f && g && pa_torch_read(fileno(f), "pytorch_model.bin", &ht, &err) == PA_OK &&
          pa_st_read(fileno(g), "model.safetensors", &hs, &err) == PA_OK);
    CHECK_INT(ht.n_tensors, hs.n_tensors);
    for (size_t i = 0; i < ht.n_tensors && i < hs.n_tensors; i++) {
        const pa_tensor_desc *t = &ht.tensors[i];
        const pa_tensor_desc *s = NULL;
        for (size_t k = 0; k < hs.n_tensors && !s; k++)
            if (strcmp(hs.tensors[k].name, t->name) == 0)
                s = &hs.tensors[k];
        CHECK_MSG(s != NULL, "%s missing from the source", t->name);
        if (!s)
            continue;
        CHECK(t->dtype == s->dtype && t->ndim == s->ndim && t->numel == s->numel &&
              memcmp(t->shape, s->shape, sizeof t->shape) == 0);
        CHECK_INT(t->begin % 64, 0); /* torch aligns storages to 64 bytes */
        size_t n = (size_t)(t->end - t->begin);
        uint8_t *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
        CHECK(a && b && pread(fileno(f), a, n, (off_t)t->begin) == (ssize_t)n &&
              pread(fileno(g), b, n, (off_t)(hs.data_offset + s->begin)) == (ssize_t)n &&
              memcmp(a, b, n) == 0);
        free(a);
        free(b);
    }
    pa_st_header_free(&ht);
    pa_st_header_free(&hs);
    if (f)
        fclose(f);
    if (g)
        fclose(g);

    expect_verdict("base", "base-torch", PA_V_IDENTICAL, "torch");
    expect_verdict("sharded", "sharded-torch", PA_V_IDENTICAL, "torch");
    expect_verdict("base", "ft-torch", PA_V_DERIVED, "torch");
    expect_verdict("ft-torch", "ft", PA_V_IDENTICAL, "safetensors");
    expect_verdict("base", "lone.pt", PA_V_IDENTICAL, "torch");
    expect_verdict("sharded", "lone-sharded.pth", PA_V_IDENTICAL, "torch");
    expect_verdict("base-torch", "other-torch", PA_V_NONE, "torch");

    /* safetensors win over .bin in one directory, as transformers loads them */
    sh("cp base-torch/pytorch_model.bin base/");
    expect_verdict("base-torch", "base", PA_V_IDENTICAL, "safetensors");
    /* a shard of the index missing: incomplete; a damaged pickle: refused */
    sh("rm sharded-torch/pytorch_model-00002-of-00003.bin");
    pa_fingerprint *fp = NULL;
    snprintf(path, sizeof path, "%s/sharded-torch", tmp);
    CHECK(pa_fingerprint_path(path, NULL, &fp, &err) == PA_E_INCOMPLETE);
    pa_error_clear(&err);
    sh("head -c 100000 base-torch/pytorch_model.bin > short.pt");
    snprintf(path, sizeof path, "%s/short.pt", tmp);
    CHECK(pa_fingerprint_path(path, NULL, &fp, &err) == PA_E_FORMAT &&
          strstr(err.msg, "truncated archive"));
    sh("rm -rf %s", tmp);
}

/* Tensors that share bytes (tied weights: two names for one tensor, or one tensor inside
 * another) get the same fingerprint on one thread as on several, each with its own bytes' digest:
 * the one-thread pass over the file used to give the second a digest of no bytes. */
static void test_shared_bytes(void)
{
    wbuf pk = {0};
    p_begin(&pk);
    p_str(&pk, "w");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){2, 3}, (uint64_t[]){3, 1}, 2);
    p_str(&pk, "tied");
    p_tensor(&pk, "FloatStorage", "0", 6, 0, (uint64_t[]){2, 3}, (uint64_t[]){3, 1}, 2);
    p_str(&pk, "b");
    p_tensor(&pk, "FloatStorage", "0", 6, 4, (uint64_t[]){2}, (uint64_t[]){1}, 1);
    p_end(&pk);
    wbuf f = checkpoint(&pk, NULL, 0);
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/provfs-torch-shared-%d.pt", base, (int)getpid());
    FILE *out = fopen(path, "wb");
    CHECK(out && fwrite(f.p, 1, f.n, out) == f.n);
    if (out)
        fclose(out);
    char want_b[65], want_w[65];
    pa_sha256_hex(six + 4, 2 * sizeof(float), want_b);
    pa_sha256_hex(six, sizeof six, want_w);
    char *first = NULL;
    for (int threads = 1; threads <= 3; threads++) {
        pa_fp_options opt = {.threads = threads};
        pa_fingerprint *fp = NULL;
        pa_error err = {0};
        CHECK_MSG(pa_fingerprint_path(path, &opt, &fp, &err) == PA_OK, "%s", err.msg);
        char *j = fp ? pa_fp_to_json(fp, false) : NULL;
        CHECK(j != NULL);
        if (j && threads == 1) {
            CHECK_MSG(strstr(j, want_b) != NULL, "b's digest %s missing", want_b);
            const char *w1 = strstr(j, want_w);
            CHECK_MSG(w1 && strstr(w1 + 64, want_w), "w and tied: digest %s not twice", want_w);
            first = j;
            j = NULL;
        } else if (j) {
            CHECK_MSG(first && strcmp(first, j) == 0, "%d threads: another fingerprint", threads);
        }
        free(j);
        pa_fingerprint_free(fp);
    }
    free(first);
    unlink(path);
    free(f.p);
    free(pk.p);
}

int main(void)
{
    test_minimal(false);
    test_minimal(true);
    test_transformers_like();
    test_unsafe_global_text();
    test_hostile_globals();
    test_bad_calls();
    test_bounds();
    test_truncation();
    test_zip_refusals();
    test_names();
    test_weights_choice();
    test_shared_bytes();
    test_mkmodel();
    return check_report("torch");
}
