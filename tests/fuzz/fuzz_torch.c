/* libFuzzer target: the PyTorch checkpoint reader (zip directory and data.pkl machine) on
 * arbitrary bytes, taken as a whole file. A success must describe tensors the caller can read by
 * offset: inside the file, sized by dtype and shape, named uniquely, sorted by begin; their first
 * elements are decoded as the fingerprint would. A failure leaves nothing behind and says why on
 * one line. */
#include "fuzz_contract.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_ELEMS 256u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_header(const pa_st_header *h, const uint8_t *data, size_t size)
{
    if (h->data_offset != 0 || h->data_len != size || h->n_tensors == 0 || !h->tensors)
        fuzz_fail("torch header without tensors or with a data section", NULL);
    float out[DECODE_ELEMS];
    for (size_t i = 0; i < h->n_tensors; i++) {
        const pa_tensor_desc *t = &h->tensors[i];
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        size_t es = pa_dtype_size(t->dtype);
        if (!t->name || !t->name[0] || t->ndim > PA_MAX_DIMS || es == 0 || numel != t->numel ||
            t->begin > t->end || t->end > size || t->end - t->begin != numel * es)
            fuzz_fail("tensor out of the file or mis-sized", t->name);
        if (i && h->tensors[i - 1].begin > t->begin)
            fuzz_fail("tensors not sorted by begin", t->name);
        for (size_t k = 0; k < i; k++)
            if (strcmp(h->tensors[k].name, t->name) == 0)
                fuzz_fail("a tensor name twice", t->name);
        if (pa_dtype_decodable(t->dtype)) {
            size_t n = t->numel < DECODE_ELEMS ? (size_t)t->numel : DECODE_ELEMS;
            pa_dtype_to_f32(t->dtype, data + t->begin, out, n);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pa_st_header h;
    pa_error err;
    pa_error_clear(&err);
    pa_status st = pa_torch_parse(data, size, "fuzz.pt", &h, &err);
    if (st == PA_OK) {
        check_header(&h, data, size);
        pa_st_header_free(&h);
    } else {
        fuzz_check_failure(st, &err);
        if (h.tensors || h.n_tensors)
            fuzz_fail("a failed parse left tensors behind", err.msg);
    }
    (void)pa_torch_legacy(data, size);
    return 0;
}
