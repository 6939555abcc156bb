/* tokenizer.json → token table and TFV: the real GPT-2 tokenizer against the reference's values,
 * and small in-memory tokenizers of every model kind. */
#include "check.h"
#include "jsonutil.h"
#include "provfs/analyzer.h"

#include <time.h>

static pa_tokenizer *parse2(const char *json, const char *config, pa_status *st, pa_error *err)
{
    pa_tokenizer *tok = NULL;
    pa_error_clear(err);
    *st = pa_tokenizer_parse(json, strlen(json), config, config ? strlen(config) : 0, "test.json",
                             &tok, err);
    return tok;
}

static pa_tokenizer *parse(const char *json)
{
    pa_status st;
    pa_error err;
    pa_tokenizer *tok = parse2(json, NULL, &st, &err);
    CHECK_MSG(st == PA_OK && tok, "%s", err.msg);
    return tok;
}

static double script(const pa_tokenizer *tok, int s)
{
    return tok->tfv.script[s];
}

static void test_gpt2(void)
{
    const char *dir = getenv("PROVFS_TESTDATA");
    CHECK_MSG(dir != NULL, "PROVFS_TESTDATA is not set");
    if (!dir)
        return;
    char path[4096], cpath[4096];
    snprintf(path, sizeof path, "%s/tokenizers/gpt2/tokenizer.json", dir);
    snprintf(cpath, sizeof cpath, "%s/tokenizers/gpt2/tokenizer_config.json", dir);
    pa_error err = {0};
    char *json = NULL, *cfg = NULL;
    size_t len = 0, clen = 0;
    CHECK_MSG(pa_read_file(path, PA_JSON_MAX_FILE, &json, &len, &err) == PA_OK, "%s", err.msg);
    CHECK_MSG(pa_read_file(cpath, PA_JSON_MAX_FILE, &cfg, &clen, &err) == PA_OK, "%s", err.msg);
    if (!json || !cfg) {
        free(json);
        free(cfg);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pa_tokenizer *tok = NULL;
    pa_status st = pa_tokenizer_parse(json, len, cfg, clen, path, &tok, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "gpt2 tokenizer parsed in %.3f s\n", secs);
    CHECK_MSG(st == PA_OK && tok, "%s", err.msg);
    if (tok) {
        const pa_tfv *t = &tok->tfv;
        CHECK_INT(tok->n_tokens, 50257);
        CHECK_INT(t->vocab_size, 50257);
        CHECK_INT(t->num_merges, 50000);
        CHECK_STR(t->merge_rule_hash,
                  "8ccd0747ca3d0cebbdfa37b743f6f5f2723f9902ed8fb95048782a3df7f26906");
        CHECK(t->pct_single_char == 0.0051);
        CHECK(t->avg_token_length == 6.38);
        CHECK_INT(t->max_token_length, 128);
        CHECK(t->pct_whitespace_prefix == 0.6593);
        CHECK(t->pct_byte_tokens == 0.0);
        CHECK(script(tok, PA_SCRIPT_LATIN) == 0.9999);
        CHECK(script(tok, PA_SCRIPT_OTHER) == 0.0001);
        CHECK(script(tok, PA_SCRIPT_CJK) == 0.0);
        CHECK(script(tok, PA_SCRIPT_CYRILLIC) == 0.0);
        CHECK_STR(t->model_kind, "BPE");
        CHECK_STR(t->tokenizer_class, "GPT2Tokenizer");
        CHECK_INT(tok->bos_id, 50256);
        CHECK_INT(tok->eos_id, 50256);
        CHECK_INT(tok->unk_id, 50256);
        CHECK_INT(tok->pad_id, PA_NULL_INT);
        CHECK_INT(pa_tokenizer_find(tok, "<|endoftext|>", 13), 50256);
        CHECK_INT(pa_tokenizer_find(tok, "\xc4\xa0the", 5), 262); /* "Ġthe" */
        CHECK_INT(pa_tokenizer_find(tok, "!", 1), 0);
        CHECK_INT(pa_tokenizer_find(tok, "no such token here", 18), -1);
        CHECK_INT(tok->tokens[0].id, 0);
        CHECK_INT(tok->tokens[50256].id, 50256);
        for (size_t i = 1; i < tok->n_tokens; i++)
            if (tok->tokens[i].id <= tok->tokens[i - 1].id) {
                CHECK_MSG(0, "tokens not sorted by id at %zu", i);
                break;
            }
        char sha[65];
        pa_sha256_hex(json, len, sha);
        CHECK_STR(tok->sha256, sha);
        CHECK_MSG(secs < 1.0, "parsing took %.3f s", secs);
    }
    pa_tokenizer_free(tok);
    free(json);
    free(cfg);
}

static void test_bpe_pairs(void)
{
    const char *strings =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\"abc\":4},"
        "\"merges\":[\"a b\",\"ab c\"]}}";
    const char *pairs =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3,\"abc\":4},"
        "\"merges\":[[\"a\",\"b\"],[\"ab\",\"c\"]]}}";
    pa_tokenizer *s = parse(strings), *p = parse(pairs);
    if (s && p) {
        CHECK_INT(s->tfv.num_merges, 2);
        CHECK_INT(p->tfv.num_merges, 2);
        char want[65];
        pa_sha256_hex("a b\nab c", 8, want);
        CHECK_STR(s->tfv.merge_rule_hash, want);
        CHECK_STR(p->tfv.merge_rule_hash, want);
        CHECK_INT(s->tfv.vocab_size, 5);
        CHECK(s->tfv.pct_single_char == 0.6);
        CHECK(s->tfv.avg_token_length == 1.6);
        CHECK_INT(s->tfv.max_token_length, 3);
        CHECK(script(s, PA_SCRIPT_LATIN) == 1.0);
        CHECK_STR(s->tfv.tokenizer_class, "");
        CHECK_INT(s->bos_id, PA_NULL_INT);
    }
    pa_tokenizer_free(s);
    pa_tokenizer_free(p);

    /* Only the first 50 merges are hashed, all are counted. */
    char buf[8192] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"x\":0},\"merges\":[";
    char joined[4096] = "";
    for (int i = 0; i < 60; i++) {
        char m[32];
        snprintf(m, sizeof m, "%sm%d n%d\"", i ? ",\"" : "\"", i, i);
        strncat(buf, m, sizeof buf - strlen(buf) - 1);
        if (i < 50) {
            snprintf(m, sizeof m, "%sm%d n%d", i ? "\n" : "", i, i);
            strncat(joined, m, sizeof joined - strlen(joined) - 1);
        }
    }
    strncat(buf, "]}}", sizeof buf - strlen(buf) - 1);
    pa_tokenizer *t = parse(buf);
    if (t) {
        char want[65];
        pa_sha256_hex(joined, strlen(joined), want);
        CHECK_INT(t->tfv.num_merges, 60);
        CHECK_STR(t->tfv.merge_rule_hash, want);
    }
    pa_tokenizer_free(t);
}

static void test_wordpiece(void)
{
    pa_tokenizer *t = parse("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                            "\"continuing_subword_prefix\":\"##\",\"vocab\":{\"[PAD]\":0,"
                            "\"[UNK]\":1,\"the\":2,\"##s\":3,\"\\u00e9t\\u00e9\":4}}}");
    if (t) {
        CHECK_STR(t->tfv.model_kind, "WordPiece");
        CHECK_INT(t->tfv.num_merges, 0);
        CHECK_STR(t->tfv.merge_rule_hash, "");
        CHECK_INT(t->tfv.vocab_size, 5);
        CHECK_INT(t->tfv.max_token_length, 5);
        CHECK(t->tfv.avg_token_length == 3.8); /* 5+5+3+3+3 = 19 code points */
        CHECK(t->tfv.pct_single_char == 0.0);
        CHECK_INT(pa_tokenizer_find(t, "\xc3\xa9t\xc3\xa9", 5), 4);
        /* alphabetic: PAD UNK the s été = 3+3+3+1+3 = 13, all Latin (é is LATIN SMALL LETTER) */
        CHECK(script(t, PA_SCRIPT_LATIN) == 1.0);
    }
    pa_tokenizer_free(t);
    /* No "type": the fields tell. */
    t = parse("{\"model\":{\"continuing_subword_prefix\":\"##\",\"vocab\":{\"a\":0}}}");
    if (t)
        CHECK_STR(t->tfv.model_kind, "WordPiece");
    pa_tokenizer_free(t);
    t = parse("{\"model\":{\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}");
    if (t)
        CHECK_STR(t->tfv.model_kind, "BPE");
    pa_tokenizer_free(t);
    t = parse("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"hello\":0,\"world\":1}}}");
    if (t) {
        CHECK_STR(t->tfv.model_kind, "WordLevel");
        CHECK(t->tfv.avg_token_length == 5.0);
    }
    pa_tokenizer_free(t);
}

static void test_unigram(void)
{
    pa_tokenizer *t = parse("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":["
                            "[\"<unk>\",0.0],[\"\\u2581the\",-1.5],[\"<0x0A>\",0],[\"<0xfF>\",0],"
                            "[\"<0x0G>\",0],[\"\\u2581\",-2],[\"s\",-3.25],[\"<0x0A\",0]]}}");
    if (t) {
        CHECK_STR(t->tfv.model_kind, "Unigram");
        CHECK_INT(t->tfv.vocab_size, 8);
        CHECK_INT(pa_tokenizer_find(t, "<unk>", 5), 0);
        CHECK_INT(pa_tokenizer_find(t, "\xe2\x96\x81the", 6), 1);
        CHECK_INT(pa_tokenizer_find(t, "s", 1), 6);
        CHECK(t->tfv.pct_byte_tokens == 0.25);       /* <0x0A> <0xfF>; not <0x0G>, <0x0A */
        CHECK(t->tfv.pct_whitespace_prefix == 0.25); /* ▁the ▁ */
        CHECK(t->tfv.pct_single_char == 0.25);       /* ▁ s */
        CHECK_INT(t->tfv.num_merges, 0);
    }
    pa_tokenizer_free(t);
}

static void test_added_tokens(void)
{
    /* An added token with a new string joins the vocabulary; one whose string exists takes the
     * added id; the same id under two strings keeps both strings. */
    pa_tokenizer *t = parse("{\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true},"
                            "{\"id\":0,\"content\":\"a\"},{\"id\":1,\"content\":\"<pad>\"}],"
                            "\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":5,\"b\":1,"
                            "\"c\":2}}}");
    if (t) {
        CHECK_INT(t->n_tokens, 5);
        CHECK_INT(t->tfv.vocab_size, 5);
        CHECK_INT(pa_tokenizer_find(t, "a", 1), 0);
        CHECK_INT(pa_tokenizer_find(t, "<s>", 3), 3);
        CHECK_INT(pa_tokenizer_find(t, "<pad>", 5), 1);
        CHECK_INT(pa_tokenizer_find(t, "b", 1), 1);
        CHECK_INT(t->tokens[0].id, 0);
        CHECK_INT(t->tokens[1].id, 1);
        CHECK_INT(t->tokens[2].id, 1);
        CHECK_STR(t->tokens[1].str, "<pad>"); /* equal ids: by bytes */
        CHECK_STR(t->tokens[2].str, "b");
        CHECK_INT(t->tokens[4].id, 3);
    }
    pa_tokenizer_free(t);
}

static void test_scripts(void)
{
    /* 中文 (CJK), 한 (Hangul), カ (Katakana), привет (Cyrillic), سلام (Arabic), नम (Devanagari: न म
     * are letters, the virama and vowel signs are not), αβ (Greek: Other), 123 and ! (not alpha).
     */
    pa_tokenizer *t =
        parse("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"\\u4e2d\\u6587\":0,\"\\ud55c\":1,"
              "\"\\u30ab\":2,\"\\u043f\\u0440\\u0438\\u0432\\u0435\\u0442\":3,"
              "\"\\u0633\\u0644\\u0627\\u0645\":4,\"\\u0928\\u092e\\u094d\":5,\"\\u03b1\\u03b2\":6,"
              "\"123\":7,\"!\":8,\"ab\":9,\"\\ud83d\\ude00\":10}}}");
    if (t) {
        /* alpha counts: CJK 4, Cyrillic 6, Arabic 4, Devanagari 2, Other 2, Latin 2 → 20 */
        CHECK(script(t, PA_SCRIPT_CJK) == 0.2);
        CHECK(script(t, PA_SCRIPT_CYRILLIC) == 0.3);
        CHECK(script(t, PA_SCRIPT_ARABIC) == 0.2);
        CHECK(script(t, PA_SCRIPT_DEVANAGARI) == 0.1);
        CHECK(script(t, PA_SCRIPT_OTHER) == 0.1);
        CHECK(script(t, PA_SCRIPT_LATIN) == 0.1);
        CHECK_INT(t->tfv.max_token_length, 6);
        /* 😀 is one code point (4 UTF-8 bytes) */
        CHECK_INT(pa_tokenizer_find(t, "\xf0\x9f\x98\x80", 4), 10);
        CHECK(t->tfv.pct_single_char == 0.3636); /* 한 カ ! 😀 → 4/11 */
    }
    pa_tokenizer_free(t);
    /* Rounding: 1/3 → 0.3333, 2/3 → 0.6667 like Python's round(x, 4). */
    t = parse("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"\\u0430\":0,\"b\":1,\"c\":2}}}");
    if (t) {
        CHECK(script(t, PA_SCRIPT_CYRILLIC) == 0.3333);
        CHECK(script(t, PA_SCRIPT_LATIN) == 0.6667);
    }
    pa_tokenizer_free(t);
    /* No alphabetic characters at all: every fraction is 0. */
    t = parse("{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"1\":0,\"-\":1}}}");
    if (t)
        for (int s = 0; s < PA_SCRIPT_COUNT; s++)
            CHECK(script(t, s) == 0.0);
    pa_tokenizer_free(t);
}

static void test_config_special(void)
{
    const char *json = "{\"added_tokens\":[{\"id\":0,\"content\":\"<s>\"},"
                       "{\"id\":1,\"content\":\"</s>\"},{\"id\":2,\"content\":\"<unk>\"}],"
                       "\"model\":{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,\"</s>\":1,\"<unk>\":2,"
                       "\"x\":3},\"merges\":[]}}";
    pa_status st;
    pa_error err;
    pa_tokenizer *t = parse2(json,
                             "{\"tokenizer_class\":\"LlamaTokenizer\",\"bos_token\":{\"__type\":"
                             "\"AddedToken\",\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":"
                             "\"</s>\",\"unk_token\":{\"content\":\"<unk>\"},\"pad_token\":null}",
                             &st, &err);
    CHECK_MSG(st == PA_OK && t, "%s", err.msg);
    if (t) {
        CHECK_STR(t->tfv.tokenizer_class, "LlamaTokenizer");
        CHECK_INT(t->bos_id, 0);
        CHECK_INT(t->eos_id, 1);
        CHECK_INT(t->unk_id, 2);
        CHECK_INT(t->pad_id, PA_NULL_INT);
        CHECK_INT(t->tfv.num_merges, 0);
        CHECK_STR(t->tfv.merge_rule_hash, "");
    }
    pa_tokenizer_free(t);
    /* A special token that is not in the vocabulary has no id. */
    t = parse2(json, "{\"bos_token\":\"<bos>\",\"eos_token\":42}", &st, &err);
    CHECK(st == PA_OK && t);
    if (t) {
        CHECK_INT(t->bos_id, PA_NULL_INT);
        CHECK_INT(t->eos_id, PA_NULL_INT);
    }
    pa_tokenizer_free(t);
    /* A broken tokenizer_config.json is an error naming it. */
    t = parse2(json, "{\"bos_token\":", &st, &err);
    CHECK(st == PA_E_FORMAT && !t);
    CHECK_MSG(strstr(err.msg, "tokenizer_config.json") != NULL, "%s", err.msg);
    t = parse2(json, "[1]", &st, &err);
    CHECK(st == PA_E_FORMAT && !t);
}

static void expect_error(const char *json, pa_status want, const char *needle)
{
    pa_status st;
    pa_error err;
    pa_tokenizer *t = parse2(json, NULL, &st, &err);
    CHECK_MSG(st == want && !t, "status %s for %s", pa_status_name(st), json);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    CHECK_MSG(strncmp(err.msg, "test.json", 9) == 0, "message '%s' lacks the label", err.msg);
    pa_tokenizer_free(t);
}

static void test_errors(void)
{
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", PA_E_FORMAT,
                 "empty vocabulary");
    expect_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", PA_E_FORMAT,
                 "empty vocabulary");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}", PA_E_FORMAT, "invalid JSON");
    expect_error("", PA_E_FORMAT, "invalid JSON");
    expect_error("[]", PA_E_FORMAT, "not a JSON object");
    expect_error("{}", PA_E_FORMAT, "model");
    expect_error("{\"model\":{\"type\":\"Magic\",\"vocab\":{\"a\":0}}}", PA_E_UNSUPPORTED, "Magic");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"zero\"}}}", PA_E_FORMAT,
                 "integer id");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}", PA_E_FORMAT,
                 "out of range");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}", PA_E_FORMAT, "integer id");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[1]}}", PA_E_FORMAT,
                 "merge 0");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",2]]}}",
                 PA_E_FORMAT, "merge 0");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":\"a b\"}}",
                 PA_E_FORMAT, "merges");
    expect_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[1,2]]}}", PA_E_FORMAT,
                 "Unigram vocab entry 0");
    expect_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":{\"a\":0}}}", PA_E_FORMAT, "vocab");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[]}}", PA_E_FORMAT, "vocab");
    expect_error("{\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                 PA_E_FORMAT, "added_tokens[0]");
    expect_error("{\"added_tokens\":{},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                 PA_E_FORMAT, "added_tokens");

    pa_tokenizer *tok = (pa_tokenizer *)1;
    pa_error err = {0};
    CHECK(pa_tokenizer_parse(NULL, 0, NULL, 0, "x", &tok, &err) == PA_E_ARG);
    CHECK(tok == NULL);
    CHECK_INT(pa_tokenizer_find(NULL, "a", 1), -1);
    pa_tokenizer_free(NULL);

    /* Not NUL terminated: only len bytes are read. */
    const char full[] = "{\"model\":{\"type\":\"WordLevel\",\"vocab\":{\"a\":0}}}GARBAGE";
    pa_error_clear(&err);
    CHECK(pa_tokenizer_parse(full, sizeof full - 1 - 7, NULL, 0, "x", &tok, &err) == PA_OK);
    pa_tokenizer_free(tok);
}

static void test_token_hash(void)
{
    /* Part of the fingerprint format: these values must never change. */
    CHECK(pa_token_hash("", 0) == 0xf52a15e9a9b5e89bull);
    CHECK(pa_token_hash("a", 1) == 0x02c0bdbf481420f8ull);
    CHECK(pa_token_hash("\xc4\xa0the", 5) == 0xc8c7165a6a36d46bull);
    CHECK(pa_token_hash("hello", 5) != pa_token_hash("hellp", 5));
    CHECK(pa_token_hash("ab", 1) == pa_token_hash("a", 1));
}

int main(void)
{
    test_gpt2();
    test_bpe_pairs();
    test_wordpiece();
    test_unigram();
    test_added_tokens();
    test_scripts();
    test_config_special();
    test_errors();
    test_token_hash();
    return check_report("tokenizer");
}
