/* libFuzzer target: reference-set files are data from outside (an imported MPK record or an entry
 * file): both parsers must refuse anything malformed without a fault. */
#include "provfs/analyzer.h"
#include "refdb.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_error err = {0};
    pa_refentry e;
    if (pa_refentry_parse((const char *)data, size, "fuzz", &e, &err) == PA_OK)
        pa_refentry_clear(&e);
    pa_error_clear(&err);
    pa_fingerprint *fp = NULL;
    char *model = NULL, *family = NULL, *asset = NULL;
    if (pa_refdb_mpk_record((const char *)data, size, "fuzz", &fp, &model, &family, &asset, &err) ==
        PA_OK) {
        pa_fingerprint_free(fp);
        free(model);
        free(family);
        free(asset);
    }
    return 0;
}
