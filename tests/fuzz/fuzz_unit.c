/* libFuzzer target: a whole model unit built from the input, fingerprinted from disk.
 *
 * An input that starts with "GGUF" is one GGUF file, fingerprinted as a unit of its own. Any other
 * input is split at the separator line "\n@@provfs-part@@\n" into up to six pieces, written (when
 * not empty) into a private directory as
 *   0 config.json   1 model.safetensors.index.json   2 and 3 the two shards   4 tokenizer.json
 *   5 tokenizer_config.json
 * The shards are model-00001-of-00002.safetensors and model-00002-of-00002.safetensors when there
 * is an index, else model.safetensors and extra.safetensors. A failure must say why and leak
 * nothing; a fingerprint must survive its JSON form and compare with itself. The directory is
 * emptied after every run. */
#include "fuzz_contract.h"
#include "fuzz_tmpdir.h"

#include <stdint.h>

#define SEP "\n@@provfs-part@@\n"
#define N_PIECES 6

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fingerprint(pa_fingerprint *fp)
{
    const char *format = pa_fp_format(fp);
    if (strcmp(format, "safetensors") != 0 && strcmp(format, "config-only") != 0 &&
        strcmp(format, "gguf") != 0)
        fuzz_fail("unknown format", format);
    if (strlen(pa_fp_digest(fp)) != 64)
        fuzz_fail("digest is not 64 hex digits", pa_fp_digest(fp));
    for (size_t i = 0; i < pa_fp_n_files(fp); i++)
        if (strlen(pa_fp_file(fp, i)->sha256) != 64)
            fuzz_fail("file without its SHA-256", pa_fp_file(fp, i)->name);
    free(fuzz_check_roundtrip(fp));
    pa_compare_result r;
    pa_compare(fp, fp, &r);
    fuzz_check_compare(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = fuzz_dir_get();
    fuzz_dir_clean();
    char path[512];
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        fuzz_dir_write("model.gguf", data, size);
        snprintf(path, sizeof path, "%s/model.gguf", dir);
    } else {
        const uint8_t *piece[N_PIECES] = {0};
        size_t len[N_PIECES] = {0};
        const uint8_t *p = data, *end = data + size;
        for (int i = 0; i < N_PIECES && p; i++) {
            const uint8_t *s = memmem(p, (size_t)(end - p), SEP, sizeof SEP - 1);
            piece[i] = p;
            len[i] = (size_t)((s ? s : end) - p);
            p = s && i + 1 < N_PIECES ? s + sizeof SEP - 1 : NULL;
        }
        bool indexed = len[1] > 0;
        const char *names[N_PIECES] = {
            "config.json",
            "model.safetensors.index.json",
            indexed ? "model-00001-of-00002.safetensors" : "model.safetensors",
            indexed ? "model-00002-of-00002.safetensors" : "extra.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        };
        for (int i = 0; i < N_PIECES; i++)
            if (len[i])
                fuzz_dir_write(names[i], piece[i], len[i]);
        snprintf(path, sizeof path, "%s", dir);
    }

    pa_fp_options opt = {0};
    opt.threads = 1;
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fingerprint_path(path, &opt, &fp, &err);
    if (st != PA_OK) {
        if (fp)
            fuzz_fail("failed fingerprint handed back", err.msg);
        fuzz_check_failure(st, &err);
    } else {
        if (!fp)
            fuzz_fail("success without a fingerprint", NULL);
        check_fingerprint(fp);
        pa_fingerprint_free(fp);
    }
    fuzz_dir_clean();
    return 0;
}
