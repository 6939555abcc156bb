/* Model formats recognised from their first bytes (the policy gate's "is this a model?"), and
 * the names of a model directory's weights. */
#include "provfs/analyzer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pa_sniff_format(const uint8_t *b, size_t n)
{
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0)
        return "gguf";
    /* safetensors: an 8-byte little-endian header length, then the JSON header's '{' */
    if (n >= 9 && b[8] == '{') {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | b[i];
        if (hl >= 2 && hl <= (1ull << 32))
            return "safetensors";
    }
    if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
        return "zip"; /* PyTorch's zip checkpoints, .npz, Keras archives */
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "pickle"; /* pickle protocol 2..5: legacy torch.save, joblib, .pkl */
    if (n >= 8 && memcmp(b, "\x89HDF\r\n\x1a\n", 8) == 0)
        return "hdf5";
    if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
        return "npy";
    return NULL;
}

bool pa_model_suffix(const char *name)
{
    static const char *const suffixes[] = {".safetensors", ".gguf", ".bin", ".pt", ".pth",
                                           ".ckpt", ".onnx", ".h5", ".hdf5", ".msgpack",
                                           ".pkl", ".pickle", ".npy", ".npz", ".keras",
                                           ".tflite", ".ggml", ".joblib"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len >= sl && strcmp(name + len - sl, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && strcmp(s + len - sl, suffix) == 0;
}

/* name is PREFIX + "." + VARIANT + SUFFIX with a non-empty VARIANT without '/': the variant. */
static bool infix(const char *name, size_t len, const char *prefix, const char *suffix,
                  const char **v, size_t *vl)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (len < pl + 2 + sl || strncmp(name, prefix, pl) != 0 || name[pl] != '.' ||
        !ends_with(name, len, suffix))
        return false;
    *v = name + pl + 1;
    *vl = len - pl - 1 - sl;
    return memchr(*v, '/', *vl) == NULL;
}

/* "-NNNNN-of-NNNNN" at name + at: the length matched, 0 when none. */
static size_t shard_tag(const char *name, size_t at)
{
    size_t i = at;
    if (name[i++] != '-')
        return 0;
    size_t d = 0;
    while (name[i] >= '0' && name[i] <= '9')
        i++, d++;
    if (d == 0 || strncmp(name + i, "-of-", 4) != 0)
        return 0;
    i += 4;
    d = 0;
    while (name[i] >= '0' && name[i] <= '9')
        i++, d++;
    return d ? i - at : 0;
}

pa_weights_name_kind pa_weights_name(const char *name, const char **variant, size_t *vlen)
{
    const char *v = NULL;
    size_t vl = 0, len = strlen(name);
    pa_weights_name_kind k = PA_WN_OTHER;
    static const struct {
        const char *base, *single_suffix, *index;
    } fam[] = {{"model", ".safetensors", "model.safetensors.index"},
               {"pytorch_model", ".bin", "pytorch_model.bin.index"}};
    for (size_t f = 0; f < 2 && k == PA_WN_OTHER; f++) {
        size_t bl = strlen(fam[f].base), il = strlen(fam[f].index);
        size_t tag = strncmp(name, fam[f].base, bl) == 0 ? shard_tag(name, bl) : 0;
        char single[32], index[40];
        snprintf(single, sizeof single, "%s%s", fam[f].base, fam[f].single_suffix);
        snprintf(index, sizeof index, "%s.json", fam[f].index);
        if (strcmp(name, single) == 0)
            k = PA_WN_SINGLE;
        else if (strcmp(name, index) == 0)
            k = PA_WN_INDEX;
        else if (strncmp(name, fam[f].index, il) == 0 &&
                 infix(name, len, fam[f].index, ".json", &v, &vl))
            k = PA_WN_INDEX;
        else if (tag && strcmp(name + bl + tag, fam[f].single_suffix) == 0)
            k = PA_WN_SHARD;
        else if (tag && infix(name + bl + tag, len - bl - tag, "", fam[f].single_suffix, &v, &vl))
            k = PA_WN_SHARD;
        else if (infix(name, len, fam[f].base, fam[f].single_suffix, &v, &vl))
            k = PA_WN_SINGLE;
        if (k == PA_WN_OTHER)
            v = NULL, vl = 0;
    }
    if (variant)
        *variant = v;
    if (vlen)
        *vlen = vl;
    return k;
}

bool pa_unit_weights_name(const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.')
        return false;
    if (ends_with(name, len, ".safetensors") || pa_weights_name(name, NULL, NULL) != PA_WN_OTHER)
        return true;
    /* pytorch_model.bin, pytorch_model-00001-of-00002.bin (transformers before 4.35) */
    return strncmp(name, "pytorch_model", 13) == 0 && ends_with(name, len, ".bin") &&
           (len == 17 || name[13] == '-');
}

/* v1 (l1) before v2 (l2) lexically: a NULL variant comes first. */
static int variant_cmp(const char *v1, size_t l1, const char *v2, size_t l2)
{
    if (!v1 || !v2)
        return (v1 != NULL) - (v2 != NULL);
    int c = memcmp(v1, v2, l1 < l2 ? l1 : l2);
    return c ? c : (l1 > l2) - (l1 < l2);
}

static bool same_variant(const char *v1, size_t l1, const char *v2, size_t l2)
{
    return variant_cmp(v1, l1, v2, l2) == 0;
}

/* The single file and index of one family ("model" or "pytorch_model") in the given variant
 * (any: the lexically first variant that has one). */
static bool choose_family(const char *const *names, size_t n, bool st, bool any,
                          pa_weights_choice *out)
{
    const char *single = NULL, *index = NULL, *best = NULL;
    size_t best_len = 0;
    bool have_best = false;
    if (any) {
        for (size_t i = 0; i < n; i++) {
            const char *v;
            size_t vl;
            pa_weights_name_kind k = pa_weights_name(names[i], &v, &vl);
            bool fam = st ? strncmp(names[i], "model", 5) == 0
                          : strncmp(names[i], "pytorch_model", 13) == 0;
            if (!fam || !v || (k != PA_WN_SINGLE && k != PA_WN_INDEX))
                continue;
            if (!have_best || variant_cmp(v, vl, best, best_len) < 0) {
                best = v;
                best_len = vl;
                have_best = true;
            }
        }
        if (!have_best)
            return false;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v;
        size_t vl;
        pa_weights_name_kind k = pa_weights_name(names[i], &v, &vl);
        bool fam = st ? strncmp(names[i], "model", 5) == 0
                      : strncmp(names[i], "pytorch_model", 13) == 0;
        if (!fam || !same_variant(v, vl, best, best_len))
            continue;
        if (k == PA_WN_SINGLE)
            single = names[i];
        else if (k == PA_WN_INDEX)
            index = names[i];
    }
    if (!single && !index)
        return false;
    out->kind = single ? PA_WK_SINGLE : PA_WK_INDEX;
    out->name = single ? single : index;
    out->stale_index = single ? index : NULL;
    out->variant = best;
    out->variant_len = best_len;
    return true;
}

void pa_weights_choose(const char *const *names, size_t n, pa_weights_choice *out)
{
    memset(out, 0, sizeof *out);
    /* no-variant files first (safetensors, then pickles), then the first variant's */
    if (!choose_family(names, n, true, false, out) && !choose_family(names, n, false, false, out) &&
        !choose_family(names, n, true, true, out) && !choose_family(names, n, false, true, out)) {
        for (size_t i = 0; i < n && out->kind != PA_WK_ALL_ST; i++)
            if (ends_with(names[i], strlen(names[i]), ".safetensors"))
                out->kind = PA_WK_ALL_ST;
        for (size_t i = 0; i < n && out->kind == PA_WK_NONE; i++)
            if (pa_unit_weights_name(names[i]) && ends_with(names[i], strlen(names[i]), ".bin"))
                out->kind = PA_WK_ALL_BIN;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v;
        size_t vl;
        pa_weights_name_kind k = pa_weights_name(names[i], &v, &vl);
        if (k != PA_WN_OTHER && v && !same_variant(v, vl, out->variant, out->variant_len))
            out->n_other_variants++;
    }
}

bool pa_weights_variant_unit(const char *const *names, size_t n, const char *name)
{
    const char *v;
    if (pa_weights_name(name, &v, NULL) != PA_WN_SINGLE || !v)
        return false;
    pa_weights_choice c;
    pa_weights_choose(names, n, &c);
    return !c.name || strcmp(c.name, name) != 0;
}

/* Appends sep and the formatted text to out (cap bytes, *len used), truncated at cap. */
static void add_text(char *out, size_t cap, size_t *len, const char *sep, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_text(char *out, size_t cap, size_t *len, const char *sep, const char *fmt, ...)
{
    size_t sl = strlen(sep);
    if (*len + sl + 1 >= cap)
        return;
    memcpy(out + *len, sep, sl + 1);
    *len += sl;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    *len = w < 0 ? *len : (size_t)w < cap - *len ? *len + (size_t)w : cap - 1;
    out[*len] = '\0';
}

char *pa_weights_notes(const char *const *names, size_t n)
{
    pa_weights_choice c;
    pa_weights_choose(names, n, &c);
    size_t cap = 1024, len = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[0] = '\0';
    if (c.stale_index)
        add_text(out, cap, &len, len ? "\n" : "", "%.200s ignored: %.200s is loaded first (an index left by an earlier sharded save)",
             c.stale_index, c.name);
    if (c.variant)
        add_text(out, cap, &len, len ? "\n" : "", "no weights without a variant: the %.*s variant is loaded",
             (int)(c.variant_len < 64 ? c.variant_len : 64), c.variant);
    if (c.n_other_variants) {
        add_text(out, cap, &len, len ? "\n" : "", "%zu file(s) of other variants, in the unit's digest but not its weights:",
             c.n_other_variants);
        for (size_t i = 0; i < n && len + 1 < cap; i++) {
            const char *v;
            size_t vl;
            if (pa_weights_name(names[i], &v, &vl) == PA_WN_OTHER || !v ||
                same_variant(v, vl, c.variant, c.variant_len))
                continue;
            add_text(out, cap, &len, " ", "%.200s%s", names[i],
                     pa_weights_variant_unit(names, n, names[i]) ? " (a model of its own)" : "");
        }
    }
    if (len == 0) {
        free(out);
        return NULL;
    }
    return out;
}
