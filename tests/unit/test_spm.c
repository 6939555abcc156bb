/* Unit tests for SentencePiece tokenizer.model files: models packed in memory with protobuf-c
 * (BPE and unigram, with and without a trainer spec) turn into the tokenizer.json text the
 * tokenizer parser accepts, with the pieces, scores, types and special ids they hold; the same
 * table through the GGUF path gives the same text; hostile bytes (not protobuf, no pieces, a
 * piece that is not UTF-8 or holds NUL, an overlong encoding, too large) are refused with one
 * line and never crash. */
#include "gguf.h"
#include "sentencepiece.pb-c.h"

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL "mem/tokenizer.model"

typedef struct piece_in {
    const char *text;
    float score;
    int type; /* 0: not written */
} piece_in;

/* Packs a ModelProto; model_type 0 leaves the trainer spec out. */
static uint8_t *pack(const piece_in *in, size_t n, int model_type, int bos, int eos, int unk,
                     int pad, size_t *len)
{
    PaSpm__ModelProto__SentencePiece *pieces = calloc(n ? n : 1, sizeof *pieces);
    PaSpm__ModelProto__SentencePiece **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        PaSpm__ModelProto__SentencePiece init = PA_SPM__MODEL_PROTO__SENTENCE_PIECE__INIT;
        pieces[i] = init;
        if (in[i].text) {
            pieces[i].has_piece = true;
            pieces[i].piece.data = (uint8_t *)in[i].text;
            pieces[i].piece.len = strlen(in[i].text);
        }
        pieces[i].has_score = true;
        pieces[i].score = in[i].score;
        if (in[i].type) {
            pieces[i].has_type = true;
            pieces[i].type = in[i].type;
        }
        ptrs[i] = &pieces[i];
    }
    PaSpm__TrainerSpec ts = PA_SPM__TRAINER_SPEC__INIT;
    ts.has_model_type = true;
    ts.model_type = model_type;
    ts.has_bos_id = ts.has_eos_id = ts.has_unk_id = ts.has_pad_id = true;
    ts.bos_id = bos;
    ts.eos_id = eos;
    ts.unk_id = unk;
    ts.pad_id = pad;
    PaSpm__ModelProto m = PA_SPM__MODEL_PROTO__INIT;
    m.n_pieces = n;
    m.pieces = ptrs;
    m.trainer_spec = model_type ? &ts : NULL;
    *len = pa_spm__model_proto__get_packed_size(&m);
    uint8_t *out = malloc(*len ? *len : 1);
    pa_spm__model_proto__pack(&m, out);
    free(ptrs);
    free(pieces);
    return out;
}

static const piece_in llama_like[] = {
    {"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"<0x41>", 0, 6},
    {"\xE2\x96\x81the", -1, 1}, {"\xE2\x96\x81" "a", -2, 1}, {"ing", -3, 1}, {"er", -4, 0},
};
#define N_LLAMA (sizeof llama_like / sizeof llama_like[0])

static void test_bpe(void)
{
    size_t len;
    uint8_t *buf = pack(llama_like, N_LLAMA, PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE, 1, 2, 0, -1,
                        &len);
    char *json = NULL, *cfg = NULL;
    pa_error err = {0};
    CHECK_INT(pa_spm_tokenizer_json(buf, len, LABEL, &json, &cfg, &err), PA_OK);
    CHECK(json && cfg);
    if (!json || !cfg) {
        free(buf);
        return;
    }
    cJSON *root = cJSON_Parse(json), *c = cJSON_Parse(cfg);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(model, "type")->valuestring, "BPE");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")));
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    CHECK_INT(cJSON_GetArraySize(vocab), N_LLAMA);
    CHECK_INT(cJSON_GetObjectItemCaseSensitive(vocab, "ing")->valuedouble, 6);
    CHECK_INT(cJSON_GetObjectItemCaseSensitive(vocab, "er")->valuedouble, 7); /* type defaults */
    /* unknown and control pieces are added tokens, normal and byte pieces are not */
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "added_tokens")), 3);
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(c, "bos_token")->valuestring, "<s>");
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(c, "eos_token")->valuestring, "</s>");
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(c, "unk_token")->valuestring, "<unk>");
    CHECK(!cJSON_GetObjectItemCaseSensitive(c, "pad_token"));

    /* the analyzer's tokenizer parser takes it */
    pa_tokenizer *tok = NULL;
    CHECK_INT(pa_tokenizer_parse(json, strlen(json), cfg, strlen(cfg), LABEL, &tok, &err), PA_OK);
    if (tok) {
        CHECK_INT(tok->n_tokens, N_LLAMA);
        CHECK_INT(tok->bos_id, 1);
        CHECK_INT(tok->eos_id, 2);
        CHECK_INT(pa_tokenizer_find(tok, "ing", 3), 6);
        pa_tokenizer_free(tok);
    }

    /* the same table as GGUF metadata arrays gives the same text */
    cJSON *tokens = cJSON_CreateArray(), *types = cJSON_CreateArray(), *scores = cJSON_CreateArray();
    for (size_t i = 0; i < N_LLAMA; i++) {
        cJSON_AddItemToArray(tokens, cJSON_CreateString(llama_like[i].text));
        cJSON_AddItemToArray(types, cJSON_CreateNumber(llama_like[i].type ? llama_like[i].type : 1));
        cJSON_AddItemToArray(scores, cJSON_CreateNumber(llama_like[i].score));
    }
    pa_token_table tt = {.tokens = tokens, .types = types, .scores = scores, .model = "llama",
                         .label = "gguf", .special = {1, 2, 0, -1}, .add_bos = -1};
    char *json2 = NULL, *cfg2 = NULL;
    CHECK_INT(pa_token_table_json(&tt, &json2, &cfg2, &err), PA_OK);
    CHECK(json2 && strcmp(json, json2) == 0);
    CHECK(cfg2 && strcmp(cfg, cfg2) == 0);
    free(json2);
    free(cfg2);
    cJSON_Delete(tokens);
    cJSON_Delete(types);
    cJSON_Delete(scores);
    cJSON_Delete(root);
    cJSON_Delete(c);
    free(json);
    free(cfg);
    free(buf);
}

static void test_unigram_and_defaults(void)
{
    static const piece_in t5[] = {{"<pad>", 0, 3}, {"</s>", 0, 3}, {"<unk>", 0, 2},
                                  {"\xE2\x96\x81", -2.5f, 1}, {"X", -7.25f, 1}};
    size_t len;
    uint8_t *buf = pack(t5, 5, PA_SPM__TRAINER_SPEC__MODEL_TYPE__UNIGRAM, -1, 1, 2, 0, &len);
    char *json = NULL, *cfg = NULL;
    pa_error err = {0};
    CHECK_INT(pa_spm_tokenizer_json(buf, len, LABEL, &json, &cfg, &err), PA_OK);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    CHECK(cJSON_IsString(type) && strcmp(type->valuestring, "Unigram") == 0);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    CHECK(cJSON_IsArray(vocab) && cJSON_GetArraySize(vocab) == 5);
    const cJSON *last = cJSON_GetArrayItem(vocab, 4);
    CHECK(last && cJSON_GetArrayItem(last, 1) &&
          cJSON_GetArrayItem(last, 1)->valuedouble == -7.25);
    cJSON *c = cfg ? cJSON_Parse(cfg) : NULL;
    CHECK(c && !cJSON_GetObjectItemCaseSensitive(c, "bos_token")); /* bos_id -1: none */
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(c, "pad_token");
    CHECK(cJSON_IsString(pad) && strcmp(pad->valuestring, "<pad>") == 0);
    cJSON_Delete(c);
    cJSON_Delete(root);
    free(json);
    free(cfg);
    free(buf);

    /* no trainer spec: the format's defaults (unigram; unk 0, bos 1, eos 2) */
    static const piece_in plain[] = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}, {"a", -1, 1}};
    buf = pack(plain, 4, 0, 0, 0, 0, 0, &len);
    CHECK_INT(pa_spm_tokenizer_json(buf, len, LABEL, &json, &cfg, &err), PA_OK);
    c = cfg ? cJSON_Parse(cfg) : NULL;
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(c, "bos_token");
    CHECK(cJSON_IsString(bos) && strcmp(bos->valuestring, "<s>") == 0);
    CHECK(json && strstr(json, "\"Unigram\""));
    cJSON_Delete(c);
    free(json);
    free(cfg);
    free(buf);
}

static void expect_refused(const void *data, size_t len, const char *what)
{
    char *json = (char *)1, *cfg = (char *)1;
    pa_error err = {0};
    pa_status st = pa_spm_tokenizer_json(data, len, LABEL, &json, &cfg, &err);
    CHECK_MSG(st == PA_E_FORMAT, "%s: status %d", what, (int)st);
    CHECK_MSG(json == NULL && cfg == NULL, "%s: output left set", what);
    CHECK_MSG(err.msg[0] && strstr(err.msg, LABEL) && !strchr(err.msg, '\n'), "%s: '%s'", what,
              err.msg);
}

static void test_hostile(void)
{
    expect_refused("", 0, "empty");
    expect_refused("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11, "bad varint");
    expect_refused("{\"model\": {}}", 13, "JSON");
    /* a field 1 length-delimited record that claims more bytes than there are */
    expect_refused("\x0a\x7f\x0a\x01", 4, "truncated");
    size_t len;
    uint8_t *buf = pack(NULL, 0, PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE, 1, 2, 0, -1, &len);
    expect_refused(buf, len, "no pieces");
    free(buf);
    static const char *const bad[] = {"\xC3", "a\xFF", "\xC0\xAF", "\xED\xA0\x80",
                                      "\xF4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        piece_in p[2] = {{"<unk>", 0, 2}, {bad[i], -1, 1}};
        buf = pack(p, 2, PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE, 1, 2, 0, -1, &len);
        expect_refused(buf, len, bad[i]);
        free(buf);
    }
    /* a piece with an embedded NUL (protobuf strings carry a length) */
    piece_in p[2] = {{"<unk>", 0, 2}, {"ok", -1, 1}};
    buf = pack(p, 2, PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE, 1, 2, 0, -1, &len);
    uint8_t *hit = memmem(buf, len, "ok", 2);
    CHECK(hit != NULL);
    if (hit) {
        hit[1] = 0;
        expect_refused(buf, len, "NUL in a piece");
    }
    free(buf);
    /* more bytes than a SentencePiece model may have: refused before decoding */
    expect_refused(llama_like, (size_t)PA_SPM_MAX_FILE + 1, "too large");
    /* special ids out of range are left out, not read */
    piece_in q[2] = {{"<unk>", 0, 2}, {"a", -1, 1}};
    buf = pack(q, 2, PA_SPM__TRAINER_SPEC__MODEL_TYPE__BPE, 99, -5, 1000000, 7, &len);
    char *json = NULL, *cfg = NULL;
    pa_error err = {0};
    CHECK_INT(pa_spm_tokenizer_json(buf, len, LABEL, &json, &cfg, &err), PA_OK);
    CHECK(cfg && strcmp(cfg, "{}") == 0);
    free(json);
    free(cfg);
    free(buf);
}

int main(void)
{
    test_bpe();
    test_unigram_and_defaults();
    test_hostile();
    return check_report("spm");
}
