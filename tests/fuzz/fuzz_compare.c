/* libFuzzer target: two hostile fingerprints, as a store or a reference set would hand them to
 * pa_compare. The input is two fingerprint JSON texts separated by the line "\n@@provfs-fp@@\n"
 * (without it, the one fingerprint is compared with itself). Each is read with pa_fp_from_json;
 * a refusal says why, an accepted one survives its JSON form, and the comparison in both
 * directions gives a well-formed result with the same verdict. */
#include "fuzz_contract.h"

#include <stdint.h>

#define SEP "\n@@provfs-fp@@\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pa_fingerprint *read_fp(const uint8_t *data, size_t size, const char *label)
{
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    pa_status st = pa_fp_from_json((const char *)data, size, label, &fp, &err);
    if (st != PA_OK) {
        if (fp)
            fuzz_fail("refused fingerprint handed back", err.msg);
        fuzz_check_failure(st, &err);
        return NULL;
    }
    if (!fp)
        fuzz_fail("success without a fingerprint", NULL);
    free(fuzz_check_roundtrip(fp));
    return fp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sep = memmem(data, size, SEP, sizeof SEP - 1);
    size_t a_len = sep ? (size_t)(sep - data) : size;
    const uint8_t *b = sep ? sep + sizeof SEP - 1 : data;
    size_t b_len = sep ? size - a_len - (sizeof SEP - 1) : size;

    pa_fingerprint *fa = read_fp(data, a_len, "fuzz/a.json");
    pa_fingerprint *fb = fa ? read_fp(b, b_len, "fuzz/b.json") : NULL;
    if (fa && fb) {
        pa_compare_result ab, ba;
        pa_compare(fa, fb, &ab);
        pa_compare(fb, fa, &ba);
        fuzz_check_compare(&ab);
        fuzz_check_compare(&ba);
        /* Only the verdict: the scores of two unrelated architectures differ with the direction
         * (tensor alignment is not symmetric). */
        if (ab.verdict != ba.verdict)
            fuzz_fail("compare verdict depends on the direction", ab.reason);
    }
    pa_fingerprint_free(fa);
    pa_fingerprint_free(fb);
    return 0;
}
