/* libFuzzer target: tokenizer.json → token table and TFV (pa_tokenizer_parse with no
 * tokenizer_config.json), checking the string index against the id-sorted table. */
#include "provfs/analyzer.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_tokenizer *tok = NULL;
    pa_error err = {0};
    pa_status st =
        pa_tokenizer_parse((const char *)data, size, NULL, 0, "fuzz/tokenizer.json", &tok, &err);
    if (st != PA_OK) {
        if (tok || err.status != st || !err.msg[0])
            __builtin_trap();
        return 0;
    }
    if (!tok || tok->n_tokens == 0 || (int64_t)tok->n_tokens != tok->tfv.vocab_size)
        __builtin_trap();
    for (size_t i = 0; i < tok->n_tokens; i++) {
        const pa_token *t = &tok->tokens[i];
        if (strlen(t->str) != t->len || pa_tokenizer_find(tok, t->str, t->len) != t->id)
            __builtin_trap();
        if (i > 0 && tok->tokens[i - 1].id > t->id)
            __builtin_trap();
    }
    double sum = 0.0;
    for (int s = 0; s < PA_SCRIPT_COUNT; s++)
        sum += tok->tfv.script[s];
    if (sum > 1.001 || tok->tfv.pct_single_char > 1.0 || tok->tfv.avg_token_length < 0.0)
        __builtin_trap();
    (void)pa_tokenizer_find(tok, (const char *)data, size > 64 ? 64 : size);
    pa_tokenizer_free(tok);
    return 0;
}
