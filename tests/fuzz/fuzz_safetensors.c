/* libFuzzer target: the safetensors header parser on arbitrary bytes. The input is the whole file,
 * so file_size == buf_len and every length in it is hostile. */
#include "provfs/analyzer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_st_header h;
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_st_parse(data, size, size, "fuzz", &h, &err);
    if (st == PA_OK) {
        /* What the rest of the analyzer relies on: sorted, in bounds, sized, disjoint. */
        uint64_t reach = 0;
        for (size_t i = 0; i < h.n_tensors; i++) {
            const pa_tensor_desc *t = &h.tensors[i];
            if (!t->name || t->begin > t->end || t->end > h.data_len || t->ndim > PA_MAX_DIMS ||
                t->end - t->begin != t->numel * pa_dtype_size(t->dtype) ||
                (i && t->begin < h.tensors[i - 1].begin) ||
                (t->begin != t->end && t->begin < reach))
                abort();
            if (t->begin != t->end && t->end > reach)
                reach = t->end;
        }
        if (h.data_offset != 8 + h.header_len || h.data_offset + h.data_len != size)
            abort();
    } else if (h.n_tensors || h.tensors || h.metadata_json || !err.msg[0]) {
        abort(); /* a failed parse leaves nothing behind and always says why */
    }
    pa_st_header_free(&h);
    (void)pa_st_sniff(data, size);
    return 0;
}
