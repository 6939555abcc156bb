/* libFuzzer target: a fingerprint read back from JSON (the store keeps thousands of them). Whatever
 * parses must also serialise and compare against itself without a fault. */
#include "provfs/analyzer.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    if (pa_fp_from_json((const char *)data, size, "fuzz", &fp, &err) == PA_OK) {
        char *j = pa_fp_to_json(fp, false);
        free(j);
        pa_compare_result r;
        pa_compare(fp, fp, &r);
        pa_fingerprint_free(fp);
    }
    return 0;
}
