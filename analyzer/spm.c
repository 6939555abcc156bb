/* SentencePiece model files (tokenizer.model) as tokenizer evidence.
 *
 * The file is a protobuf ModelProto. It is decoded with protobuf-c (Debian's libprotobuf-c)
 * from analyzer/sentencepiece.proto, which declares only the fields read here; the decoder
 * skips every other field. The bytes come from users: the size is bounded before decoding,
 * the piece count after, and every piece must be UTF-8 without NUL. The pieces then go through
 * the same builder as a GGUF token table (pa_token_table_json), so the tokenizer fingerprint of
 * a Llama/Mistral/T5/Gemma folder that ships only tokenizer.model equals that of a GGUF
 * converted from it. */
#include "gguf.h"
#include "sentencepiece.pb-c.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), no NUL. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

pa_status pa_spm_tokenizer_json(const void *data, size_t len, const char *label,
                                char **json_out, char **config_out, pa_error *err)
{
    if (!json_out)
        return pa_error_set(err, PA_E_ARG, "sentencepiece: no output");
    *json_out = NULL;
    if (config_out)
        *config_out = NULL;
    if (!label)
        label = "tokenizer.model";
    if (!data || len == 0)
        return pa_error_set(err, PA_E_FORMAT, "%s: empty file", label);
    if (len > PA_SPM_MAX_FILE)
        return pa_error_set(err, PA_E_FORMAT, "%s: %zu bytes, more than a SentencePiece model "
                            "may have (%u)", label, len, PA_SPM_MAX_FILE);
    PaSpm__ModelProto *m = pa_spm__model_proto__unpack(NULL, len, data);
    if (!m)
        return pa_error_set(err, PA_E_FORMAT, "%s: not a SentencePiece model (protobuf)", label);
    pa_status st = PA_OK;
    cJSON *tokens = NULL, *types = NULL, *scores = NULL;
    if (m->n_pieces == 0) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: a SentencePiece model without pieces", label);
        goto out;
    }
    if (m->n_pieces > PA_SPM_MAX_PIECES) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: %zu pieces, more than %u", label, m->n_pieces,
                          PA_SPM_MAX_PIECES);
        goto out;
    }
    tokens = cJSON_CreateArray();
    types = cJSON_CreateArray();
    scores = cJSON_CreateArray();
    if (!tokens || !types || !scores) {
        st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
        goto out;
    }
    for (size_t i = 0; i < m->n_pieces; i++) {
        const PaSpm__ModelProto__SentencePiece *p = m->pieces[i];
        if (!p->has_piece || p->piece.len == 0) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: piece %zu is missing", label, i);
            goto out;
        }
        if (!utf8_valid(p->piece.data, p->piece.len)) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: piece %zu is not UTF-8 text", label, i);
            goto out;
        }
        char piece[1024];
        if (p->piece.len >= sizeof piece) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: piece %zu is %zu bytes long (at most %zu)",
                              label, i, p->piece.len, sizeof piece - 1);
            goto out;
        }
        memcpy(piece, p->piece.data, p->piece.len);
        piece[p->piece.len] = '\0';
        int type = p->has_type ? (int)p->type : 1;
        if (type < 1 || type > 6)
            type = 1;
        double score = p->has_score ? (double)p->score : 0.0;
        if (score != score || score > 1e30 || score < -1e30)
            score = 0.0;
        cJSON *t = cJSON_CreateString(piece), *ty = cJSON_CreateNumber(type),
              *sc = cJSON_CreateNumber(score);
        if (!t || !ty || !sc || !cJSON_AddItemToArray(tokens, t)) {
            cJSON_Delete(t);
            cJSON_Delete(ty);
            cJSON_Delete(sc);
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto out;
        }
        cJSON_AddItemToArray(types, ty);
        cJSON_AddItemToArray(scores, sc);
    }
    const PaSpm__TrainerSpec *ts = m->trainer_spec;
    bool unigram = !ts || !ts->has_model_type || ts->model_type == PA_SPM__TRAINER_SPEC__MODEL_TYPE__UNIGRAM;
    pa_token_table tt = {.tokens = tokens,
                         .types = types,
                         .scores = scores,
                         .model = unigram ? "t5" : "llama",
                         .label = label,
                         .add_bos = -1};
    /* the defaults of the format when the trainer spec is absent (unk 0, bos 1, eos 2, no pad) */
    tt.special[0] = ts ? ts->bos_id : 1;
    tt.special[1] = ts ? ts->eos_id : 2;
    tt.special[2] = ts ? ts->unk_id : 0;
    tt.special[3] = ts ? ts->pad_id : -1;
    st = pa_token_table_json(&tt, json_out, config_out, err);
out:
    cJSON_Delete(tokens);
    cJSON_Delete(types);
    cJSON_Delete(scores);
    pa_spm__model_proto__free_unpacked(m, NULL);
    return st;
}
