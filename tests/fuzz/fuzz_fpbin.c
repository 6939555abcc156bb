/* libFuzzer target: a fingerprint in the compact binary form the lineage database keeps (a
 * database is data: a peer daemon or a hand-edited file may have written it). What reads must
 * write bytes that read back to the same bytes, and compare against itself without a fault. */
#include "provfs/analyzer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_error err = {0};
    pa_fingerprint *fp = NULL;
    if (pa_fp_from_bin(data, size, "fuzz", &fp, &err) != PA_OK)
        return 0;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    pa_fingerprint *again = NULL;
    if (pa_fp_to_bin(fp, &b1, &n1, &err) != PA_OK ||
        pa_fp_from_bin(b1, n1, "again", &again, &err) != PA_OK ||
        pa_fp_to_bin(again, &b2, &n2, &err) != PA_OK || n1 != n2 || memcmp(b1, b2, n1) != 0) {
        fprintf(stderr, "fuzz_fpbin: what was read does not write back alike: %s\n", err.msg);
        abort();
    }
    char *j = pa_fp_to_json(fp, false);
    free(j);
    pa_compare_result r;
    pa_compare(fp, again, &r);
    free(b1);
    free(b2);
    pa_fingerprint_free(again);
    pa_fingerprint_free(fp);
    return 0;
}
