/* mkmodel: the synthetic BPE tokenizer (Hugging Face tokenizer.json layout) and its extension.
 *
 * The vocabulary is specials, byte tokens, base characters, then pseudo-words built from
 * syllables. Every multi-character token comes with a merge of two tokens that already exist, so
 * the merges are valid BPE. A word's split point is a pure function of its text; that lets us
 * count exactly how many tokens a word needs before adding it, and so stop at exactly V. */
#include "mkmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA_SPACE "\xE2\x96\x81" /* U+2581 */
#define GPT2_SPACE "\xC4\xA0"      /* U+0120 */
#define MAX_WORD 64

typedef struct vocab {
    char **tok;
    size_t n, cap;
    char **merge; /* "left right" */
    size_t n_merge, cap_merge;
    size_t *slot; /* open addressing: index + 1, 0 = empty */
    size_t n_slot;
} vocab;

static uint64_t str_hash(const char *s, size_t len)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001B3ull;
    return h;
}

static size_t vocab_find_slot(const vocab *v, const char *s, size_t len)
{
    size_t mask = v->n_slot - 1, i = (size_t)str_hash(s, len) & mask;
    while (v->slot[i]) {
        const char *t = v->tok[v->slot[i] - 1];
        if (strlen(t) == len && memcmp(t, s, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static bool vocab_has(const vocab *v, const char *s, size_t len)
{
    return v->n_slot && v->slot[vocab_find_slot(v, s, len)] != 0;
}

static void vocab_rehash(vocab *v)
{
    size_t n_slot = v->n_slot ? v->n_slot * 2 : 1024;
    free(v->slot);
    v->slot = mk_alloc(n_slot, sizeof *v->slot);
    v->n_slot = n_slot;
    for (size_t i = 0; i < v->n; i++)
        v->slot[vocab_find_slot(v, v->tok[i], strlen(v->tok[i]))] = i + 1;
}

/* Adds s (len bytes) unless present; returns true when added. */
static bool vocab_add(vocab *v, const char *s, size_t len)
{
    if ((v->n + 1) * 2 > v->n_slot)
        vocab_rehash(v);
    size_t at = vocab_find_slot(v, s, len);
    if (v->slot[at])
        return false;
    v->tok = mk_grow(v->tok, &v->cap, v->n + 1, sizeof *v->tok);
    char *copy = mk_alloc(len + 1, 1);
    memcpy(copy, s, len);
    v->tok[v->n++] = copy;
    v->slot[at] = v->n;
    return true;
}

static void vocab_add_merge(vocab *v, const char *s, size_t len, size_t split)
{
    v->merge = mk_grow(v->merge, &v->cap_merge, v->n_merge + 1, sizeof *v->merge);
    char *m = mk_alloc(len + 2, 1);
    memcpy(m, s, split);
    m[split] = ' ';
    memcpy(m + split + 1, s + split, len - split);
    v->merge[v->n_merge++] = m;
}

static void vocab_free(vocab *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    for (size_t i = 0; i < v->n_merge; i++)
        free(v->merge[i]);
    free(v->tok);
    free(v->merge);
    free(v->slot);
}

/* ---------------------------------------------------------------- words */

static size_t utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* Byte offset of code point cp. */
static size_t utf8_offset(const char *s, size_t len, size_t cp)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == cp)
                return i;
            n++;
        }
    return len;
}

/* Where a multi-character token splits: near the middle, nudged by a hash of the text. */
static size_t split_point(const char *s, size_t len)
{
    size_t ncp = utf8_count(s, len);
    size_t cp = ncp / 2 + (size_t)(str_hash(s, len) % 3);
    cp = cp > 0 ? cp - 1 : 0;
    if (cp < 1)
        cp = 1;
    if (cp > ncp - 1)
        cp = ncp - 1;
    return utf8_offset(s, len, cp);
}

typedef struct pending {
    char item[64][MAX_WORD + 1];
    size_t n;
    bool overflow;
} pending;

static bool pending_has(const pending *p, const char *s, size_t len)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->item[i]) == len && memcmp(p->item[i], s, len) == 0)
            return true;
    return false;
}

/* Collect, children first, the tokens a word needs that the vocabulary lacks. */
static void plan_word(const vocab *v, const char *s, size_t len, pending *p)
{
    if (len > MAX_WORD || p->overflow) {
        p->overflow = true;
        return;
    }
    if (vocab_has(v, s, len) || pending_has(p, s, len))
        return;
    if (utf8_count(s, len) > 1) {
        size_t at = split_point(s, len);
        plan_word(v, s, at, p);
        plan_word(v, s + at, len - at, p);
    }
    if (p->n == sizeof p->item / sizeof p->item[0]) {
        p->overflow = true;
        return;
    }
    memcpy(p->item[p->n], s, len);
    p->item[p->n][len] = '\0';
    p->n++;
}

static void commit_plan(vocab *v, const pending *p)
{
    for (size_t i = 0; i < p->n; i++) {
        const char *s = p->item[i];
        size_t len = strlen(s);
        vocab_add(v, s, len);
        if (utf8_count(s, len) > 1)
            vocab_add_merge(v, s, len, split_point(s, len));
    }
}

static const char *const onsets[] = {"",   "",   "b",  "c",  "d",  "f",  "g",  "h",  "j",  "k",
                                     "l",  "m",  "n",  "p",  "r",  "s",  "t",  "v",  "w",  "z",
                                     "st", "tr", "pl", "ch", "sh", "th", "br", "gr", "cr", "fl"};
static const char *const vowels[] = {"a", "e",  "i",  "o",  "u",  "a",  "e",
                                     "o", "ai", "ou", "ea", "io", "ee", "oo"};
static const char *const codas[] = {"",  "",  "",   "",   "n",  "r",  "s", "t",
                                    "l", "m", "nd", "ng", "st", "rt", "ck"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const common_words[] = {
    "the",   "of",     "and",   "to",    "in",    "is",   "that",  "for",    "it",    "with",
    "as",    "was",    "on",    "be",    "by",    "at",   "this",  "from",   "are",   "or",
    "an",    "not",    "have",  "but",   "one",   "all",  "which", "were",   "they",  "you",
    "he",    "she",    "we",    "can",   "new",   "more", "time",  "has",    "his",   "her",
    "been",  "year",   "would", "there", "their", "will", "also",  "two",    "first", "after",
    "other", "people", "about", "when",  "world", "city", "water", "number", "day"};

/* A pseudo-word of 1-3 syllables, word-initial (with the space marker) 60% of the time. */
static size_t make_word(mk_rng *rng, const char *space, char *out)
{
    size_t len = 0;
    if (mk_rng_below(rng, 10) < 6) {
        memcpy(out, space, strlen(space));
        len = strlen(space);
    }
    size_t start = len;
    uint64_t r = mk_rng_below(rng, 10);
    int syllables = r < 4 ? 1 : r < 8 ? 2 : 3;
    for (int i = 0; i < syllables; i++) {
        const char *parts[3] = {onsets[mk_rng_below(rng, COUNT(onsets))],
                                vowels[mk_rng_below(rng, COUNT(vowels))],
                                codas[mk_rng_below(rng, COUNT(codas))]};
        for (int k = 0; k < 3; k++) {
            size_t l = strlen(parts[k]);
            memcpy(out + len, parts[k], l);
            len += l;
        }
    }
    if (mk_rng_below(rng, 10) == 0 && out[start] >= 'a' && out[start] <= 'z')
        out[start] = (char)(out[start] - 'a' + 'A');
    out[len] = '\0';
    return len;
}

/* Add words until the vocabulary holds target tokens. learned_from is the first index that may
 * serve as a part when we glue two existing tokens to land exactly on the target. */
static void grow(vocab *v, mk_rng *rng, const char *space, size_t target, size_t learned_from,
                 bool with_common)
{
    char word[MAX_WORD + 1];
    pending plan;
    if (with_common)
        for (size_t i = 0; i < COUNT(common_words) && v->n < target; i++) {
            int len = snprintf(word, sizeof word, "%s%s", space, common_words[i]);
            plan.n = 0;
            plan.overflow = false;
            plan_word(v, word, (size_t)len, &plan);
            if (!plan.overflow && plan.n <= target - v->n)
                commit_plan(v, &plan);
        }
    size_t misses = 0, attempts = 0;
    while (v->n < target) {
        if (++attempts > 1000000 + 1000 * target)
            mk_die(MK_EXIT_USAGE, "cannot build a vocabulary of %zu tokens", target);
        size_t remaining = target - v->n;
        if (remaining <= 2 || misses > 64) {
            /* glue two existing tokens: exactly one new token */
            size_t lo = v->n - learned_from >= 2 ? learned_from : 0;
            const char *left = v->tok[lo + mk_rng_below(rng, v->n - lo)];
            const char *right = v->tok[lo + mk_rng_below(rng, v->n - lo)];
            size_t ll = strlen(left), rl = strlen(right);
            if (ll + rl > MAX_WORD || strncmp(right, space, strlen(space)) == 0 || left[0] == '<' ||
                right[0] == '<')
                continue;
            memcpy(word, left, ll);
            memcpy(word + ll, right, rl);
            if (vocab_add(v, word, ll + rl)) {
                vocab_add_merge(v, word, ll + rl, ll);
                misses = 0;
            }
            continue;
        }
        size_t len = make_word(rng, space, word);
        plan.n = 0;
        plan.overflow = false;
        plan_word(v, word, len, &plan);
        if (plan.overflow || plan.n == 0 || plan.n > remaining) {
            misses++;
            continue;
        }
        misses = 0;
        commit_plan(v, &plan);
    }
}

/* The 256 GPT-2 byte-level characters in vocabulary order (bytes_to_unicode). */
static void gpt2_byte_chars(char out[256][4])
{
    int order[256], n = 0;
    bool printable[256] = {false};
    for (int b = '!'; b <= '~'; b++)
        printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; b++)
        printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; b++)
        printable[b] = true;
    for (int b = 0; b < 256; b++)
        if (printable[b])
            order[n++] = b;
    int extra = 0;
    int code[256];
    for (int b = 0; b < 256; b++)
        code[b] = printable[b] ? b : 256 + extra++;
    for (int b = 0; b < 256; b++)
        if (!printable[b])
            order[n++] = b;
    for (int i = 0; i < 256; i++) {
        int c = code[order[i]];
        if (c < 0x80) {
            out[i][0] = (char)c;
            out[i][1] = '\0';
        } else {
            out[i][0] = (char)(0xC0 | (c >> 6));
            out[i][1] = (char)(0x80 | (c & 0x3F));
            out[i][2] = '\0';
        }
    }
}

size_t mk_tokenizer_min_vocab(bool gpt2)
{
    /* specials + bytes (+ the space marker and printable ASCII for llama) + a few words */
    return gpt2 ? 1 + 256 + 8 : 3 + 256 + 1 + 94 + 8;
}

static cJSON *added_token(int id, const char *content)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddFalseToObject(t, "single_word");
    cJSON_AddFalseToObject(t, "lstrip");
    cJSON_AddFalseToObject(t, "rstrip");
    cJSON_AddFalseToObject(t, "normalized");
    cJSON_AddTrueToObject(t, "special");
    return t;
}

static cJSON *type_object(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *byte_level(bool add_prefix_space, bool trim_offsets)
{
    cJSON *o = type_object("ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddTrueToObject(o, "use_regex");
    return o;
}

static cJSON *replace_rule(const char *from, const char *to)
{
    cJSON *o = type_object("Replace");
    cJSON *pattern = cJSON_AddObjectToObject(o, "pattern");
    cJSON_AddStringToObject(pattern, "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

char *mk_tokenizer_json(bool gpt2, uint64_t tok_seed, size_t vocab_size)
{
    if (vocab_size < mk_tokenizer_min_vocab(gpt2))
        mk_die(MK_EXIT_USAGE, "--vocab %zu: the synthetic tokenizer needs at least %zu tokens",
               vocab_size, mk_tokenizer_min_vocab(gpt2));
    vocab v = {0};
    const char *space = gpt2 ? GPT2_SPACE : LLAMA_SPACE;
    if (gpt2) {
        char bytes[256][4];
        gpt2_byte_chars(bytes);
        vocab_add(&v, "<|endoftext|>", 13);
        for (int i = 0; i < 256; i++)
            vocab_add(&v, bytes[i], strlen(bytes[i]));
    } else {
        vocab_add(&v, "<unk>", 5);
        vocab_add(&v, "<s>", 3);
        vocab_add(&v, "</s>", 4);
        for (int b = 0; b < 256; b++) {
            char tok[8];
            snprintf(tok, sizeof tok, "<0x%02X>", b);
            vocab_add(&v, tok, 6);
        }
        vocab_add(&v, LLAMA_SPACE, 3);
        for (char c = '!'; c <= '~'; c++)
            vocab_add(&v, &c, 1);
    }
    size_t learned_from = v.n;
    mk_rng rng;
    mk_rng_init(&rng, tok_seed, "tokenizer", gpt2 ? "gpt2" : "llama");
    grow(&v, &rng, space, vocab_size, learned_from, true);

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    if (gpt2) {
        cJSON_AddItemToArray(added, added_token(0, "<|endoftext|>"));
        cJSON_AddNullToObject(root, "normalizer");
        cJSON_AddItemToObject(root, "pre_tokenizer", byte_level(false, true));
        cJSON_AddItemToObject(root, "post_processor", byte_level(true, false));
        cJSON_AddItemToObject(root, "decoder", byte_level(true, true));
    } else {
        cJSON_AddItemToArray(added, added_token(0, "<unk>"));
        cJSON_AddItemToArray(added, added_token(1, "<s>"));
        cJSON_AddItemToArray(added, added_token(2, "</s>"));
        cJSON *norm = type_object("Sequence");
        cJSON *list = cJSON_AddArrayToObject(norm, "normalizers");
        cJSON *prepend = type_object("Prepend");
        cJSON_AddStringToObject(prepend, "prepend", LLAMA_SPACE);
        cJSON_AddItemToArray(list, prepend);
        cJSON_AddItemToArray(list, replace_rule(" ", LLAMA_SPACE));
        cJSON_AddItemToObject(root, "normalizer", norm);
        cJSON_AddNullToObject(root, "pre_tokenizer");
        cJSON_AddNullToObject(root, "post_processor");
        cJSON *dec = type_object("Sequence");
        cJSON *decoders = cJSON_AddArrayToObject(dec, "decoders");
        cJSON_AddItemToArray(decoders, replace_rule(LLAMA_SPACE, " "));
        cJSON_AddItemToArray(decoders, type_object("ByteFallback"));
        cJSON_AddItemToArray(decoders, type_object("Fuse"));
        cJSON *strip = type_object("Strip");
        cJSON_AddStringToObject(strip, "content", " ");
        cJSON_AddNumberToObject(strip, "start", 1);
        cJSON_AddNumberToObject(strip, "stop", 0);
        cJSON_AddItemToArray(decoders, strip);
        cJSON_AddItemToObject(root, "decoder", dec);
    }
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    if (gpt2) {
        cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
        cJSON_AddStringToObject(model, "end_of_word_suffix", "");
        cJSON_AddFalseToObject(model, "fuse_unk");
        cJSON_AddFalseToObject(model, "byte_fallback");
    } else {
        cJSON_AddStringToObject(model, "unk_token", "<unk>");
        cJSON_AddNullToObject(model, "continuing_subword_prefix");
        cJSON_AddNullToObject(model, "end_of_word_suffix");
        cJSON_AddTrueToObject(model, "fuse_unk");
        cJSON_AddTrueToObject(model, "byte_fallback");
    }
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab_obj = cJSON_AddObjectToObject(model, "vocab");
    for (size_t i = 0; i < v.n; i++)
        cJSON_AddItemToObject(vocab_obj, v.tok[i], cJSON_CreateNumber((double)i));
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (size_t i = 0; i < v.n_merge; i++)
        cJSON_AddItemToArray(merges, cJSON_CreateString(v.merge[i]));
    char *out = mk_json_pretty(root);
    cJSON_Delete(root);
    vocab_free(&v);
    return out;
}

char *mk_tokenizer_config_json(bool gpt2, int64_t max_pos)
{
    if (gpt2)
        return mk_printf("{\n  \"add_prefix_space\": false,\n  \"bos_token\": \"<|endoftext|>\",\n"
                         "  \"clean_up_tokenization_spaces\": true,\n"
                         "  \"eos_token\": \"<|endoftext|>\",\n  \"model_max_length\": %lld,\n"
                         "  \"tokenizer_class\": \"GPT2TokenizerFast\",\n"
                         "  \"unk_token\": \"<|endoftext|>\"\n}\n",
                         (long long)max_pos);
    return mk_printf("{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
                     "  \"bos_token\": \"<s>\",\n  \"clean_up_tokenization_spaces\": false,\n"
                     "  \"eos_token\": \"</s>\",\n  \"legacy\": false,\n"
                     "  \"model_max_length\": %lld,\n  \"pad_token\": null,\n"
                     "  \"sp_model_kwargs\": {},\n  \"tokenizer_class\": \"LlamaTokenizerFast\",\n"
                     "  \"unk_token\": \"<unk>\"\n}\n",
                     (long long)max_pos);
}

char *mk_tokenizer_extend(const char *json, size_t len, const char *label, bool gpt2, uint64_t seed,
                          size_t add)
{
    cJSON *root = mk_parse_json(json, len, label);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cJSON *vocab_obj = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab_obj))
        mk_die(MK_EXIT_USAGE, "%s: no model.vocab object (not a BPE tokenizer?)", label);
    if (!merges)
        merges = cJSON_AddArrayToObject(model, "merges");
    if (!cJSON_IsArray(merges))
        mk_die(MK_EXIT_USAGE, "%s: model.merges is not an array", label);
    bool pairs = merges->child && cJSON_IsArray(merges->child);

    vocab v = {0};
    double max_id = -1;
    for (const cJSON *t = vocab_obj->child; t; t = t->next) {
        if (!t->string || !cJSON_IsNumber(t))
            mk_die(MK_EXIT_USAGE, "%s: malformed model.vocab entry", label);
        vocab_add(&v, t->string, strlen(t->string));
        if (t->valuedouble > max_id)
            max_id = t->valuedouble;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    for (const cJSON *t = added ? added->child : NULL; t; t = t->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (cJSON_IsString(content))
            vocab_add(&v, content->valuestring, strlen(content->valuestring));
        if (cJSON_IsNumber(id) && id->valuedouble > max_id)
            max_id = id->valuedouble;
    }
    size_t before = v.n, merges_before = v.n_merge;
    mk_rng rng;
    mk_rng_init(&rng, seed, "vocab-extend", gpt2 ? "gpt2" : "llama");
    grow(&v, &rng, gpt2 ? GPT2_SPACE : LLAMA_SPACE, before + add, 0, false);
    for (size_t i = before; i < v.n; i++)
        cJSON_AddItemToObject(vocab_obj, v.tok[i],
                              cJSON_CreateNumber(max_id + 1 + (double)(i - before)));
    for (size_t i = merges_before; i < v.n_merge; i++) {
        if (pairs) {
            char *sp = strchr(v.merge[i], ' ');
            *sp = '\0';
            const char *pair[2] = {v.merge[i], sp + 1};
            cJSON_AddItemToArray(merges, cJSON_CreateStringArray(pair, 2));
        } else {
            cJSON_AddItemToArray(merges, cJSON_CreateString(v.merge[i]));
        }
    }
    char *out = mk_json_pretty(root);
    cJSON_Delete(root);
    vocab_free(&v);
    return out;
}
