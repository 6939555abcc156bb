/* libFuzzer target: a SentencePiece tokenizer.model (protobuf) → tokenizer.json text
 * (pa_spm_tokenizer_json), then that text through the tokenizer parser as the fingerprint does. */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = NULL, *cfg = NULL;
    pa_error err = {0};
    pa_status st = pa_spm_tokenizer_json(data, size, "fuzz/tokenizer.model", &json, &cfg, &err);
    if (st != PA_OK) {
        if (json || cfg || err.status != st || !err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    if (!json || !cfg)
        __builtin_trap();
    pa_tokenizer *tok = NULL;
    pa_error terr = {0};
    if (pa_tokenizer_parse(json, strlen(json), cfg, strlen(cfg), "fuzz/tokenizer.model", &tok,
                           &terr) == PA_OK) {
        if (!tok || tok->n_tokens == 0)
            __builtin_trap();
        pa_tokenizer_free(tok);
    } else if (tok || !terr.msg[0]) {
        __builtin_trap();
    }
    free(json);
    free(cfg);
    return 0;
}
