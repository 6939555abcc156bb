/* mkmodel derive --kind peft: a PEFT LoRA adapter folder for a llama-layout parent, as
 * peft's save_pretrained writes it: adapter_config.json (base_model_name_or_path, peft_type LORA,
 * r, lora_alpha, target_modules q_proj and v_proj) and adapter_model.safetensors holding, for each
 * adapted module M [out, in] of the parent, base_model.model.M.lora_A.weight [r, in] and
 * base_model.model.M.lora_B.weight [out, r] (F32, values from the seed). The parent's weights are
 * not copied: an adapter is applied on top of its base. */
#include "mkmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct peft_pair {
    char *name_a, *name_b;
    uint64_t in, out;
} peft_pair;

static bool targeted(const char *name)
{
    size_t n = strlen(name);
    return n > 14 && strcmp(name + n - 7, ".weight") == 0 &&
           (strncmp(name + n - 14, ".q_proj", 7) == 0 || strncmp(name + n - 14, ".v_proj", 7) == 0);
}

void mk_derive_peft(const mk_parent *p, const char *parent_dir, const char *out,
                    const mk_options *o)
{
    if (p->gpt2)
        mk_die(MK_EXIT_USAGE, "--kind peft needs a llama-layout parent (q_proj/v_proj linears)");
    uint64_t r = (uint64_t)o->rank;
    if (r < 1 || r > 4096)
        mk_die(MK_EXIT_USAGE, "--rank must be in [1, 4096]");
    peft_pair *pairs = mk_alloc(p->n ? p->n : 1, sizeof *pairs);
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        const pa_tensor_desc *d = p->t[i].desc;
        if (d->ndim != 2 || !targeted(d->name))
            continue;
        size_t ml = strlen(d->name) - 7;
        pairs[n].name_a = mk_printf("base_model.model.%.*s.lora_A.weight", (int)ml, d->name);
        pairs[n].name_b = mk_printf("base_model.model.%.*s.lora_B.weight", (int)ml, d->name);
        pairs[n].out = d->shape[0];
        pairs[n].in = d->shape[1];
        n++;
    }
    if (n == 0)
        mk_die(MK_EXIT_USAGE, "%s: no q_proj/v_proj matrices to adapt", parent_dir);
    /* safetensors: the header (names sorted, as safetensors writes them), then the data */
    cJSON *hdr = cJSON_CreateObject();
    uint64_t off = 0;
    char **names = mk_alloc(2 * n, sizeof *names);
    uint64_t *rows = mk_alloc(2 * n, sizeof *rows), *cols = mk_alloc(2 * n, sizeof *cols);
    for (size_t i = 0; i < n; i++) {
        names[2 * i] = pairs[i].name_a;
        rows[2 * i] = r;
        cols[2 * i] = pairs[i].in;
        names[2 * i + 1] = pairs[i].name_b;
        rows[2 * i + 1] = pairs[i].out;
        cols[2 * i + 1] = r;
    }
    for (size_t i = 0; i < 2 * n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)rows[i]));
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)cols[i]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        uint64_t len = rows[i] * cols[i] * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + len)));
        off += len;
        cJSON_AddItemToObject(hdr, names[i], t);
    }
    char *json = cJSON_PrintUnformatted(hdr);
    if (!json)
        mk_die(MK_EXIT_IO, "out of memory");
    size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
    size_t total = 8 + padded + (size_t)off;
    uint8_t *buf = mk_alloc(total, 1);
    for (int b = 0; b < 8; b++)
        buf[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, json, jl);
    memset(buf + 8 + jl, ' ', padded - jl);
    float *data = (float *)(void *)(buf + 8 + padded);
    size_t at = 0;
    for (size_t i = 0; i < 2 * n; i++) {
        mk_rng rng;
        mk_rng_init(&rng, o->seed, "peft", names[i]);
        float tmp;
        for (uint64_t k = 0; k < rows[i] * cols[i]; k++) {
            tmp = 0.02f * mk_rng_normal(&rng);
            memcpy(&data[at++], &tmp, sizeof tmp); /* little-endian hosts */
        }
    }
    mk_make_dir(out);
    mk_write_file(out, "adapter_model.safetensors", buf, total);
    /* the declared base: the parent directory as given */
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "base_model_name_or_path", parent_dir);
    cJSON_AddStringToObject(cfg, "peft_type", "LORA");
    cJSON_AddStringToObject(cfg, "task_type", "CAUSAL_LM");
    cJSON_AddNumberToObject(cfg, "r", (double)r);
    cJSON_AddNumberToObject(cfg, "lora_alpha", (double)(2 * r));
    cJSON_AddNumberToObject(cfg, "lora_dropout", 0.05);
    cJSON_AddStringToObject(cfg, "bias", "none");
    cJSON_AddBoolToObject(cfg, "fan_in_fan_out", false);
    cJSON *tm = cJSON_AddArrayToObject(cfg, "target_modules");
    cJSON_AddItemToArray(tm, cJSON_CreateString("q_proj"));
    cJSON_AddItemToArray(tm, cJSON_CreateString("v_proj"));
    char *text = mk_json_pretty(cfg);
    mk_write_file(out, "adapter_config.json", text, strlen(text));
    free(text);
    cJSON_Delete(cfg);
    free(buf);
    free(json);
    cJSON_Delete(hdr);
    for (size_t i = 0; i < n; i++) {
        free(pairs[i].name_a);
        free(pairs[i].name_b);
    }
    free(pairs);
    free(names);
    free(rows);
    free(cols);
}
