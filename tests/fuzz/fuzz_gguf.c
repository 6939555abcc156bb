/* libFuzzer target: the GGUF header parser on arbitrary bytes, then everything a caller does with
 * a parsed header: decode the first blocks of each supported tensor, build config.json and
 * tokenizer.json from the metadata and feed them to their parsers, map tensor names and Q/K rows.
 * The input is the whole file, so file_size == size and every count and length in it is hostile. */
#include "gguf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_BYTES 4096u /* per tensor: the first few KB of whole blocks */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the analyzer relies on after a successful parse: sorted, aligned, in bounds, sized. */
static void check_invariants(const pa_gguf *g, size_t size)
{
    if ((g->version != 2 && g->version != 3) || !g->alignment ||
        (g->alignment & (g->alignment - 1)) || g->data_offset % g->alignment ||
        g->data_offset < g->header_len || !cJSON_IsObject(g->kv))
        abort();
    for (size_t i = 0; i < g->n_tensors; i++) {
        const pa_gguf_tensor *t = &g->tensors[i];
        uint64_t numel = 1, nbytes = 0;
        for (uint32_t d = 0; d < t->ndim; d++)
            numel *= t->ne[d];
        if (!t->name || t->ndim < 1 || t->ndim > PA_GGUF_MAX_DIMS || numel != t->numel ||
            !pa_gguf_type_known(t->type) || t->ne[0] % pa_gguf_block_elems(t->type) ||
            !pa_gguf_nbytes(t->type, numel, &nbytes) || nbytes != t->nbytes ||
            t->offset < g->data_offset || (t->offset - g->data_offset) % g->alignment ||
            t->offset > size || t->nbytes > size - t->offset ||
            (i && g->tensors[i - 1].offset + g->tensors[i - 1].nbytes > t->offset))
            abort();
        if (pa_gguf_find(g, t->name) != t)
            abort(); /* names are unique */
    }
}

static void decode_prefixes(const pa_gguf *g, const uint8_t *data)
{
    for (size_t i = 0; i < g->n_tensors; i++) {
        const pa_gguf_tensor *t = &g->tensors[i];
        if (!pa_gguf_type_supported(t->type))
            continue;
        size_t block_bytes = pa_gguf_block_bytes(t->type),
               block_elems = pa_gguf_block_elems(t->type);
        size_t blocks = (t->nbytes < DECODE_BYTES ? (size_t)t->nbytes : DECODE_BYTES) / block_bytes;
        if (!blocks)
            continue;
        float *out = malloc(blocks * block_elems * sizeof *out);
        if (!out)
            continue;
        pa_error err;
        pa_error_clear(&err);
        if (pa_gguf_dequant(t->type, data + t->offset, blocks * block_bytes, out,
                            blocks * block_elems, &err) != PA_OK)
            abort();
        free(out);
    }
}

static void map_metadata(const pa_gguf *g)
{
    pa_error err;
    char *json = NULL, *cfg = NULL;
    pa_error_clear(&err);
    if (pa_gguf_config_json(g, &json, &err) == PA_OK) {
        pa_mfi mfi;
        pa_error_clear(&err);
        if (pa_mfi_parse(json, strlen(json), "fuzz config", &mfi, &err) == PA_OK)
            pa_mfi_free(&mfi);
        free(json);
    } else if (json) {
        abort();
    }
    pa_error_clear(&err);
    if (pa_gguf_tokenizer_json(g, &json, &cfg, &err) == PA_OK) {
        pa_tokenizer *tok = NULL;
        pa_error_clear(&err);
        if (pa_tokenizer_parse(json, strlen(json), cfg, strlen(cfg), "fuzz tok", &tok, &err) ==
            PA_OK)
            pa_tokenizer_free(tok);
        free(json);
        free(cfg);
    } else if (json || cfg) {
        abort();
    }

    int64_t n_head = 0, n_head_kv = 0;
    (void)pa_gguf_arch_int(g, "attention.head_count", &n_head);
    (void)pa_gguf_arch_int(g, "attention.head_count_kv", &n_head_kv);
    (void)pa_gguf_arch_permutes_qk(pa_gguf_kv_str(g, "general.architecture"));
    for (size_t i = 0; i < g->n_tensors; i++) {
        const pa_gguf_tensor *t = &g->tensors[i];
        char *hf = pa_gguf_hf_name(t->name);
        if (!hf)
            abort();
        free(hf);
        uint64_t rows = t->ndim > 1 ? t->ne[1] : t->ne[0];
        uint32_t heads = (uint32_t)(i % 2 ? n_head : n_head_kv);
        for (uint64_t r = 0; r < rows && r < 64; r++) {
            uint64_t hf_row = pa_gguf_qk_row(r, rows, heads);
            if (hf_row >= rows || pa_gguf_qk_row_forward(hf_row, rows, heads) != r)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_gguf g;
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_gguf_parse(data, size, size, "fuzz", &g, &err);
    if (st == PA_OK) {
        check_invariants(&g, size);
        decode_prefixes(&g, data);
        map_metadata(&g);
    } else if (g.n_tensors || g.tensors || g.kv || !err.msg[0] || strchr(err.msg, '\n')) {
        abort(); /* a failed parse leaves nothing behind and always says why, on one line */
    }
    pa_gguf_free(&g);
    (void)pa_gguf_sniff(data, size);
    return 0;
}
