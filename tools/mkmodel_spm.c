/* SentencePiece tokenizer.model files for test models (mkmodel create --spm), written with
 * protobuf-c from analyzer/sentencepiece.proto: the pieces of the synthetic tokenizer.json in id
 * order, as a Llama-style BPE model with byte fallback. */
#include "mkmodel.h"
#include "jsonutil.h"
#include "sentencepiece.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_byte_piece(const char *s)
{
    return strlen(s) == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>';
}

uint8_t *mk_spm_model(const char *json, size_t len, const char *label, size_t *out_len)
{
    cJSON *root = mk_parse_json(json, len, label);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab))
        mk_die(MK_EXIT_USAGE, "%s: no vocab object to turn into SentencePiece pieces", label);
    size_t n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > (1 << 24))
            mk_die(MK_EXIT_USAGE, "%s: token '%.40s' has no valid id", label, e->string);
        if ((size_t)e->valuedouble >= n)
            n = (size_t)e->valuedouble + 1;
    }
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        int64_t id;
        if (!pa_json_str(a, "content") || !pa_json_int(a, "id", &id) || id < 0 || id > (1 << 24))
            mk_die(MK_EXIT_USAGE, "%s: added token without a valid id and content", label);
        if ((size_t)id >= n)
            n = (size_t)id + 1;
    }
    const char **text = mk_alloc(n, sizeof *text);
    int *type = mk_alloc(n, sizeof *type);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        size_t id = (size_t)e->valuedouble;
        text[id] = e->string;
        type[id] = is_byte_piece(e->string) ? PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__BYTE
                                            : PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__NORMAL;
    }
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) {
        int64_t id = 0;
        pa_json_int(a, "id", &id);
        const char *c = pa_json_str(a, "content");
        text[id] = c;
        bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special"));
        type[id] = strcmp(c, "<unk>") == 0 ? PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__UNKNOWN
                   : special ? PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__CONTROL
                             : PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__USER_DEFINED;
    }
    PaSpm__ModelProto__SentencePiece *pieces = mk_alloc(n, sizeof *pieces);
    PaSpm__ModelProto__SentencePiece **ptrs = mk_alloc(n, sizeof *ptrs);
    char **pads = mk_alloc(n, sizeof *pads);
    PaSpm__TrainerSpec ts = PA_SPM__TRAINER_SPEC__INIT;
    ts.has_model_type = true;
    ts.model_type = PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE;
    ts.has_byte_fallback = true;
    ts.byte_fallback = true;
    ts.has_vocab_size = true;
    ts.vocab_size = (int32_t)n;
    ts.has_unk_id = ts.has_bos_id = ts.has_eos_id = ts.has_pad_id = true;
    ts.unk_id = ts.bos_id = ts.eos_id = ts.pad_id = -1;
    for (size_t i = 0; i < n; i++) {
        PaSpm__ModelProto__SentencePiece init = PA_SPM__MODEL_PROTO__SENTENCE_PIECE__INIT;
        pieces[i] = init;
        if (!text[i]) {
            pads[i] = mk_printf("[PAD%zu]", i);
            text[i] = pads[i];
            type[i] = PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__UNUSED;
        }
        pieces[i].has_piece = true;
        pieces[i].piece.data = (uint8_t *)text[i];
        pieces[i].piece.len = strlen(text[i]);
        pieces[i].has_score = true;
        pieces[i].score = type[i] == PA_SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__NORMAL
                              ? -(float)i
                              : 0.0f;
        pieces[i].has_type = true;
        pieces[i].type = type[i];
        ptrs[i] = &pieces[i];
        if (strcmp(text[i], "<unk>") == 0)
            ts.unk_id = (int32_t)i;
        else if (strcmp(text[i], "<s>") == 0)
            ts.bos_id = (int32_t)i;
        else if (strcmp(text[i], "</s>") == 0)
            ts.eos_id = (int32_t)i;
    }
    PaSpm__ModelProto m = PA_SPM__MODEL_PROTO__INIT;
    m.n_pieces = n;
    m.pieces = ptrs;
    m.trainer_spec = &ts;
    size_t size = pa_spm__model_proto__get_packed_size(&m);
    uint8_t *out = mk_alloc(size ? size : 1, 1);
    *out_len = pa_spm__model_proto__pack(&m, out);
    for (size_t i = 0; i < n; i++)
        free(pads[i]);
    free(pads);
    free(ptrs);
    free(pieces);
    free(type);
    free(text);
    cJSON_Delete(root);
    return out;
}
