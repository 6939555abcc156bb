/* Fingerprint assembly: which files make the unit, its config and tokenizer (safetensors
 * directory or GGUF metadata), the weights pass (stream.c), the unit digest, and the read-only
 * views of the result. */
#include "fp.h"
#include "gguf.h"
#include "jsonutil.h"
#include "model.h"
#include "sha.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ assembly */

void pa_tensor_fp_free(pa_tensor_fp *t)
{
    free(t->name);
    free(t->role);
    free(t->colsum.v);
    free(t->rowsum.v);
    free(t->block.v);
    free(t->sample.v);
}

void pa_fingerprint_free(pa_fingerprint *fp)
{
    if (!fp)
        return;
    free(fp->path);
    for (size_t i = 0; i < fp->n_files; i++)
        free(fp->files[i].name);
    free(fp->files);
    if (fp->has_mfi)
        pa_mfi_free(&fp->mfi);
    free(fp->vocab_hashes);
    for (size_t i = 0; i < fp->n_tensors; i++)
        pa_tensor_fp_free(&fp->tensors[i]);
    free(fp->tensors);
    free(fp->embed.tensor);
    free(fp->embed.anchor_cos);
    free(fp->embed.anchor_rows);
    free(fp->probe.layer);
    free(fp->probe.have);
    free(fp->probe.prod);
    free(fp);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Keep the k smallest token-string hashes: a bottom-k sketch whose Jaccard estimate is exact for
 * vocabularies of up to k tokens. */
static pa_status vocab_sketch(pa_fingerprint *fp, const pa_tokenizer *tok, pa_error *err)
{
    size_t n = tok->n_tokens;
    uint64_t *h = malloc((n ? n : 1) * sizeof *h);
    if (!h)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", fp->path);
    for (size_t i = 0; i < n; i++)
        h[i] = pa_token_hash(tok->tokens[i].str, tok->tokens[i].len);
    qsort(h, n, sizeof *h, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || h[i] != h[u - 1])
            h[u++] = h[i];
    fp->vocab_n = u;
    fp->vocab_k = (uint32_t)(u < PA_SK_VOCAB ? u : PA_SK_VOCAB);
    /* shrink to the sketch; if that fails the larger block serves as well */
    uint64_t *shrunk = realloc(h, (fp->vocab_k ? fp->vocab_k : 1) * sizeof *h);
    fp->vocab_hashes = shrunk ? shrunk : h;
    return PA_OK;
}

static pa_status read_json_file(const pa_unit *u, const char *path, char **text, size_t *len,
                                pa_error *err)
{
    return pa_unit_read_file(u, path, PA_JSON_MAX_FILE, text, len, err);
}

/* TFV, special ids and the vocabulary sketch from a parsed tokenizer. */
static pa_status fill_tokenizer(pa_fingerprint *fp, pa_tokenizer *tok, pa_error *err)
{
    fp->has_tfv = true;
    fp->tfv = tok->tfv;
    fp->tfv.bos_id = tok->bos_id;
    fp->tfv.eos_id = tok->eos_id;
    fp->tfv.pad_id = tok->pad_id;
    fp->tfv.unk_id = tok->unk_id;
    fp->tfv.mask_id = PA_NULL_INT;
    static const char *const masks[] = {"<mask>", "[MASK]", "<MASK>"};
    for (size_t m = 0; m < 3 && fp->tfv.mask_id == PA_NULL_INT; m++) {
        int64_t id = pa_tokenizer_find(tok, masks[m], strlen(masks[m]));
        if (id >= 0)
            fp->tfv.mask_id = id;
    }
    if (fp->has_mfi) {
        if (tok->bos_id != PA_NULL_INT)
            fp->mfi.bos_token_id = tok->bos_id;
        if (tok->eos_id != PA_NULL_INT)
            fp->mfi.eos_token_id = tok->eos_id;
    }
    return vocab_sketch(fp, tok, err);
}

/* A GGUF file carries its config and tokenizer as metadata: rebuild the Hugging Face JSON and run
 * the same parsers, so MFI and TFV mean the same for both formats. */
static pa_status load_gguf_metadata(pa_fingerprint *fp, const pa_unit *u, pa_tokenizer **tok_out,
                                    pa_error *err)
{
    char *cfg = NULL, *tokj = NULL, *tokcfg = NULL;
    pa_error sub = {0};
    pa_status st = pa_gguf_config_json(&u->gguf, &cfg, &sub);
    if (st == PA_OK) {
        st = pa_mfi_parse(cfg, strlen(cfg), u->path, &fp->mfi, err);
        fp->has_mfi = st == PA_OK;
    } else if (st == PA_E_UNSUPPORTED) {
        st = PA_OK; /* no general.architecture: weights only */
    } else {
        pa_error_set(err, st, "%s", sub.msg);
    }
    free(cfg);
    if (st)
        return st;
    pa_error_clear(&sub);
    pa_status ts = pa_gguf_tokenizer_json(&u->gguf, &tokj, &tokcfg, &sub);
    if (ts == PA_OK) {
        pa_tokenizer *tok = NULL;
        st = pa_tokenizer_parse(tokj, strlen(tokj), tokcfg, tokcfg ? strlen(tokcfg) : 0, u->path,
                                &tok, err);
        if (!st) {
            *tok_out = tok;
            if (fp->has_mfi && !pa_sha256_hex(tokj, strlen(tokj), fp->mfi.tokenizer_hash))
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
            if (!st)
                st = fill_tokenizer(fp, tok, err);
        }
    } else if (ts != PA_E_UNSUPPORTED) {
        st = pa_error_set(err, ts, "%s", sub.msg);
    }
    free(tokj);
    free(tokcfg);
    if (!st && fp->has_mfi && !pa_mfi_finish(&fp->mfi))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    return st;
}

/* A folder whose tokenizer is only a SentencePiece tokenizer.model (Llama-1/2, Mistral, T5,
 * Gemma repositories without tokenizer.json): the pieces become tokenizer.json text as a GGUF's
 * token table does (pa_spm_tokenizer_json), so both give the same tokenizer evidence and
 * tokenizer_hash (the SHA-256 of that text). tokenizer_config.json, when present, names the
 * special tokens; otherwise the trainer spec's ids do. */
static pa_status load_spm(pa_fingerprint *fp, const pa_unit *u, pa_tokenizer **tok_out,
                          pa_error *err)
{
    char *raw = NULL, *tokj = NULL, *gencfg = NULL, *cfg = NULL;
    size_t raw_len = 0, cfg_len = 0;
    pa_status st = pa_unit_read_file(u, u->spm_path, PA_SPM_MAX_FILE, &raw, &raw_len, err);
    if (!st)
        st = pa_spm_tokenizer_json(raw, raw_len, u->spm_path, &tokj, &gencfg, err);
    free(raw);
    if (!st && u->tokcfg_path)
        st = read_json_file(u, u->tokcfg_path, &cfg, &cfg_len, err);
    if (!st && !cfg) {
        cfg = gencfg;
        gencfg = NULL;
        cfg_len = strlen(cfg);
    }
    pa_tokenizer *tok = NULL;
    if (!st)
        st = pa_tokenizer_parse(tokj, strlen(tokj), cfg, cfg_len, u->spm_path, &tok, err);
    if (!st) {
        *tok_out = tok;
        if (fp->has_mfi && !pa_sha256_hex(tokj, strlen(tokj), fp->mfi.tokenizer_hash))
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->spm_path);
        if (!st)
            st = fill_tokenizer(fp, tok, err);
    }
    free(tokj);
    free(gencfg);
    free(cfg);
    return st;
}

static pa_status load_metadata(pa_fingerprint *fp, const pa_unit *u, pa_tokenizer **tok_out,
                               pa_error *err)
{
    pa_status st = PA_OK;
    char *text = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    *tok_out = NULL;
    if (u->is_gguf)
        return load_gguf_metadata(fp, u, tok_out, err);
    if (u->config_path) {
        st = read_json_file(u, u->config_path, &text, &len, err);
        if (st)
            return st;
        st = pa_mfi_parse(text, len, u->config_path, &fp->mfi, err);
        free(text);
        text = NULL;
        if (st)
            return st;
        fp->has_mfi = true;
    } else if (u->is_dir && !u->adapter_path) {
        return pa_error_set(err, PA_E_FORMAT, "%s: config.json is missing", u->path);
    }
    if (u->tok_path) {
        st = read_json_file(u, u->tok_path, &text, &len, err);
        if (!st && u->tokcfg_path)
            st = read_json_file(u, u->tokcfg_path, &cfg, &cfg_len, err);
        pa_tokenizer *tok = NULL;
        if (!st)
            st = pa_tokenizer_parse(text, len, cfg, cfg_len, u->tok_path, &tok, err);
        free(cfg);
        if (!st) {
            *tok_out = tok;
            if (fp->has_mfi && !pa_sha256_hex(text, len, fp->mfi.tokenizer_hash))
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->tok_path);
            if (!st)
                st = fill_tokenizer(fp, tok, err);
        }
        free(text);
    } else if (u->spm_path) {
        st = load_spm(fp, u, tok_out, err);
    }
    if (!st && fp->has_mfi && !pa_mfi_finish(&fp->mfi))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u->path);
    return st;
}

/* The unit digest: SHA-256 over the sorted "name\0sha256\n" list. A single-file unit (a GGUF or
 * .safetensors file, not a variant read with its directory's config) is its content alone: the name is left out, so a rename keeps its digest
 * and with it its approval. */
static pa_status digest_files(pa_fingerprint *fp, bool single_file, pa_error *err)
{
    pa_sha_ctx *sha = pa_sha_new();
    if (!sha)
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", fp->path);
    for (size_t i = 0; i < fp->n_files; i++) {
        const char *name = single_file ? "" : fp->files[i].name;
        pa_sha_update(sha, name, strlen(name) + 1);
        pa_sha_update(sha, fp->files[i].sha256, strlen(fp->files[i].sha256));
        pa_sha_update(sha, "\n", 1);
    }
    uint8_t d[32];
    pa_sha_final(sha, d);
    pa_hex(d, 32, fp->digest);
    return PA_OK;
}

/* Fingerprints an opened unit (freed here). */
static pa_status fingerprint_unit(pa_unit *up, const char *path, const pa_fp_options *opt,
                                  pa_fingerprint **out, pa_error *err)
{
    pa_unit u = *up;
    pa_status st;
    pa_fingerprint *fp = calloc(1, sizeof *fp);
    if (!fp) {
        pa_unit_free(&u);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    }
    fp->path = strdup(u.path);
    fp->files = calloc(u.n_files ? u.n_files : 1, sizeof *fp->files);
    if (!fp->path || !fp->files) {
        pa_unit_free(&u);
        pa_fingerprint_free(fp);
        return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < u.n_files; i++) {
        fp->files[i] = u.files[i];
        fp->files[i].name = strdup(u.files[i].name);
        fp->n_files = i + 1;
        if (!fp->files[i].name) {
            pa_unit_free(&u);
            pa_fingerprint_free(fp);
            return pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
        }
    }
    if (opt && opt->known_sha256)
        for (size_t i = 0; i < u.n_files; i++) {
            const char *h = opt->known_sha256(opt->known_ctx, u.files[i].name, u.files[i].size,
                                              u.files[i].mtime_ns);
            if (h && strlen(h) == 64)
                memcpy(fp->files[i].sha256, h, 65);
        }
    pa_tokenizer *tok = NULL;
    st = load_metadata(fp, &u, &tok, err);
    bool weights = !(opt && (opt->flags & PA_FP_NO_WEIGHTS));
    bool has_tensors = u.n_shards > 0 || u.is_gguf;
    if (!st && weights && has_tensors)
        st = pa_stream_weights(fp, &u, tok, opt, err);
    if (!st && (!weights || !has_tensors) && !(opt && (opt->flags & PA_FP_NO_FILE_SHA))) {
        /* still hash every file */
        for (size_t i = 0; i < u.n_files && !st; i++) {
            char *text = NULL;
            size_t len = 0;
            /* small files only here: weights are hashed by run_weights */
            if (u.files[i].size > PA_JSON_MAX_FILE || fp->files[i].sha256[0])
                continue;
            st = pa_unit_read_file(&u, u.file_paths[i], PA_JSON_MAX_FILE, &text, &len, err);
            if (!st)
                if (!pa_sha256_hex(text, len, fp->files[i].sha256))
                    st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", u.file_paths[i]);
            free(text);
        }
    }
    if (!st)
        st = digest_files(fp, !u.is_dir && u.n_files == 1, err);
    if (!st) {
        /* the format of the unit, whether or not its weights were read */
        if (u.is_gguf)
            snprintf(fp->format, sizeof fp->format, "gguf");
        else if (u.n_shards)
            snprintf(fp->format, sizeof fp->format, u.shards[0].torch ? "torch" : "safetensors");
        else
            snprintf(fp->format, sizeof fp->format, "config-only");
    }
    if (!st && !pa_fp_compact(fp))
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", path);
    pa_tokenizer_free(tok);
    pa_unit_free(&u);
    if (st) {
        pa_fingerprint_free(fp);
        return st;
    }
    *out = fp;
    return PA_OK;
}

pa_status pa_fingerprint_path(const char *path, const pa_fp_options *opt, pa_fingerprint **out,
                              pa_error *err)
{
    *out = NULL;
    pa_unit u;
    pa_status st = pa_unit_open(path, opt, &u, err);
    return st ? st : fingerprint_unit(&u, path, opt, out, err);
}

pa_status pa_fingerprint_files(const char *path, const pa_unit_files *files,
                               const pa_fp_options *opt, pa_fingerprint **out, pa_error *err)
{
    *out = NULL;
    pa_unit u;
    pa_status st = pa_unit_open_given(path, files, &u, err);
    return st ? st : fingerprint_unit(&u, path, opt, out, err);
}

/* ------------------------------------------------------------------ views */

bool pa_fp_set_path(pa_fingerprint *fp, const char *path)
{
    char *p = path ? strdup(path) : NULL;
    if (path && !p)
        return false;
    free(fp->path);
    fp->path = p;
    return true;
}

const pa_mfi *pa_fp_mfi(const pa_fingerprint *fp)
{
    return fp->has_mfi ? &fp->mfi : NULL;
}
const pa_tfv *pa_fp_tfv(const pa_fingerprint *fp)
{
    return fp->has_tfv ? &fp->tfv : NULL;
}
size_t pa_fp_n_files(const pa_fingerprint *fp)
{
    return fp->n_files;
}
const pa_file_fp *pa_fp_file(const pa_fingerprint *fp, size_t i)
{
    return i < fp->n_files ? &fp->files[i] : NULL;
}
uint64_t pa_fp_n_params(const pa_fingerprint *fp)
{
    return fp->n_params;
}
size_t pa_fp_n_tensors(const pa_fingerprint *fp)
{
    return fp->n_tensors;
}
bool pa_fp_embed_shape(const pa_fingerprint *fp, uint64_t *vocab, uint64_t *hidden)
{
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        if (t->role && strcmp(t->role, "embed.w") == 0 && t->ndim == 2 && t->shape[0] > 0 &&
            t->shape[1] > 0) {
            *vocab = t->shape[0];
            *hidden = t->shape[1];
            return true;
        }
    }
    return false;
}
bool pa_fp_has_weights(const pa_fingerprint *fp)
{
    return fp->has_weights;
}
bool pa_fp_quantized(const pa_fingerprint *fp)
{
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const pa_tensor_fp *t = &fp->tensors[i];
        if (t->ndim < 2)
            continue;
        if (t->ggml ? t->ggml_type != PA_GGML_F32 && t->ggml_type != PA_GGML_F16 &&
                          t->ggml_type != PA_GGML_BF16
                    : t->dtype == PA_DT_I8 || t->dtype == PA_DT_U8 ||
                          t->dtype == PA_DT_F8_E4M3 || t->dtype == PA_DT_F8_E5M2)
            return true;
    }
    return fp->grid; /* int8 values written back as floats (compact.c) */
}
const char *pa_fp_digest(const pa_fingerprint *fp)
{
    return fp->digest;
}
const char *pa_fp_format(const pa_fingerprint *fp)
{
    return fp->format;
}
