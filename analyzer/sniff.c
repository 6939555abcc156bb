/* Model formats recognised from their first bytes (the policy gate's "is this a model?"), and
 * the names of a model directory's weights. */
#include "provfs/analyzer.h"

#include <string.h>

const char *pa_sniff_format(const uint8_t *b, size_t n)
{
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0)
        return "gguf";
    /* safetensors: an 8-byte little-endian header length, then the JSON header's '{' */
    if (n >= 9 && b[8] == '{') {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | b[i];
        if (hl >= 2 && hl <= (1ull << 32))
            return "safetensors";
    }
    if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
        return "zip"; /* PyTorch's zip checkpoints, .npz, Keras archives */
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "pickle"; /* pickle protocol 2..5: legacy torch.save, joblib, .pkl */
    if (n >= 8 && memcmp(b, "\x89HDF\r\n\x1a\n", 8) == 0)
        return "hdf5";
    if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
        return "npy";
    return NULL;
}

bool pa_model_suffix(const char *name)
{
    static const char *const suffixes[] = {".safetensors", ".gguf", ".bin", ".pt", ".pth",
                                           ".ckpt", ".onnx", ".h5", ".hdf5", ".msgpack",
                                           ".pkl", ".pickle", ".npy", ".npz", ".keras",
                                           ".tflite", ".ggml", ".joblib"};
    size_t len = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t sl = strlen(suffixes[i]);
        if (len >= sl && strcmp(name + len - sl, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && strcmp(s + len - sl, suffix) == 0;
}

bool pa_unit_weights_name(const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.')
        return false;
    if (ends_with(name, len, ".safetensors") || strcmp(name, "model.safetensors.index.json") == 0 ||
        strcmp(name, "pytorch_model.bin.index.json") == 0)
        return true;
    /* pytorch_model.bin, pytorch_model-00001-of-00002.bin (transformers before 4.35) */
    return strncmp(name, "pytorch_model", 13) == 0 && ends_with(name, len, ".bin") &&
           (len == 17 || name[13] == '-');
}
