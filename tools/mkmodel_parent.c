/* mkmodel: reading a parent model directory — config.json, the safetensors header of every shard
 * (through the analyzer's parser), and each tensor's role and layer from its name. */
#include "mkmodel.h"

#include "jsonutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Role from the name's stem (without .weight/.bias); Hugging Face llama and gpt2 names and the
 * names `rename` produces. */
static const struct {
    const char *stem;
    int role;
} role_table[] = {
    {"self_attn.q_proj", MK_R_Q},
    {"attn.wq", MK_R_Q},
    {"self_attn.k_proj", MK_R_K},
    {"attn.wk", MK_R_K},
    {"self_attn.v_proj", MK_R_V},
    {"attn.wv", MK_R_V},
    {"self_attn.o_proj", MK_R_O},
    {"attn.wo", MK_R_O},
    {"mlp.gate_proj", MK_R_GATE},
    {"ffn.w1", MK_R_GATE},
    {"mlp.up_proj", MK_R_UP},
    {"ffn.w3", MK_R_UP},
    {"mlp.down_proj", MK_R_DOWN},
    {"ffn.w2", MK_R_DOWN},
    {"attn.c_attn", MK_R_QKV},
    {"attn.c_proj", MK_R_ATTN_PROJ},
    {"mlp.c_fc", MK_R_FC},
    {"mlp.c_proj", MK_R_MLP_PROJ},
    {"input_layernorm", MK_R_NORM},
    {"post_attention_layernorm", MK_R_NORM},
    {"attn_norm", MK_R_NORM},
    {"ffn_norm", MK_R_NORM},
    {"ln_1", MK_R_NORM},
    {"ln_2", MK_R_NORM},
    {"ln_f", MK_R_NORM},
    {"norm", MK_R_NORM},
    {"embed_tokens", MK_R_EMBED},
    {"tok_embeddings", MK_R_EMBED},
    {"wte", MK_R_EMBED},
    {"wpe", MK_R_POS},
    {"lm_head", MK_R_LM_HEAD},
    {"output", MK_R_LM_HEAD},
};

bool mk_ends_with(const char *s, size_t len, const char *suffix)
{
    size_t l = strlen(suffix);
    return len >= l && memcmp(s + len - l, suffix, l) == 0;
}

static int parse_digits(const char *d, const char *e)
{
    int v = 0;
    for (; d < e; d++)
        v = v * 10 + (*d - '0');
    return v;
}

static void classify(mk_src_tensor *t)
{
    const char *name = t->desc->name;
    size_t len = strlen(name);
    t->bias = mk_ends_with(name, len, ".bias");
    if (t->bias)
        len -= 5;
    else if (mk_ends_with(name, len, ".weight"))
        len -= 7;
    t->role = MK_R_OTHER;
    for (size_t i = 0; i < sizeof role_table / sizeof role_table[0]; i++) {
        size_t l = strlen(role_table[i].stem);
        if (mk_ends_with(name, len, role_table[i].stem) && (len == l || name[len - l - 1] == '.')) {
            t->role = role_table[i].role;
            break;
        }
    }
    /* layer number: "<stack>.<digits>." with stack layers, h or blocks */
    t->layer = -1;
    static const char *const stacks[] = {"layers.", "h.", "blocks."};
    for (size_t s = 0; s < 3 && t->layer < 0; s++) {
        size_t sl = strlen(stacks[s]);
        for (const char *p = name; (p = strstr(p, stacks[s])) != NULL; p++) {
            if (p != name && p[-1] != '.')
                continue;
            const char *d = p + sl, *e = d;
            while (*e >= '0' && *e <= '9')
                e++;
            if (e == d || *e != '.' || e - d > 6)
                continue;
            t->layer = parse_digits(d, e);
            t->layer_at = (size_t)(d - name);
            t->layer_len = (size_t)(e - d);
            break;
        }
    }
}

bool mk_is_float(pa_dtype dtype)
{
    return dtype == PA_DT_F32 || dtype == PA_DT_F16 || dtype == PA_DT_BF16 || dtype == PA_DT_F64 ||
           dtype == PA_DT_F8_E4M3 || dtype == PA_DT_F8_E5M2;
}

static void open_shard(mk_parent *p, const char *file)
{
    if (strchr(file, '/') || strcmp(file, "..") == 0 || strcmp(file, ".") == 0 || !file[0])
        mk_die(MK_EXIT_USAGE,
               "%s/model.safetensors.index.json: shard name '%s' is not a plain "
               "file name",
               p->dir, file);
    for (size_t i = 0; i < p->n_shards; i++)
        if (strcmp(strrchr(p->shards[i].path, '/') + 1, file) == 0)
            return;
    size_t cap = p->n_shards;
    p->shards = mk_grow(p->shards, &cap, p->n_shards + 1, sizeof *p->shards);
    mk_src_shard *s = &p->shards[p->n_shards];
    memset(s, 0, sizeof *s);
    s->path = mk_printf("%s/%s", p->dir, file);
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        mk_die(MK_EXIT_USAGE, "%s: cannot open: %s", s->path, strerror(errno));
    pa_error err = {0};
    if (pa_st_read(s->fd, s->path, &s->hdr, &err) != PA_OK)
        mk_die(MK_EXIT_USAGE, "%s", err.msg);
    p->n_shards++;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_src_name(const void *a, const void *b)
{
    const mk_src_tensor *x = *(const mk_src_tensor *const *)a,
                        *y = *(const mk_src_tensor *const *)b;
    return strcmp(x->desc->name, y->desc->name);
}

static const cJSON *cfg_item(const mk_parent *p, const char *const *keys)
{
    for (; *keys; keys++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->cfg, *keys);
        if (v && !cJSON_IsNull(v))
            return v;
    }
    return NULL;
}

int64_t mk_cfg_int(const mk_parent *p, const char *const *keys, int64_t fallback)
{
    const cJSON *v = cfg_item(p, keys);
    if (!v)
        return fallback;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 1e9)
        mk_die(MK_EXIT_USAGE, "%s/config.json: %s is not a positive integer", p->dir, keys[0]);
    return (int64_t)v->valuedouble;
}

void mk_parent_load(mk_parent *p, const char *dir)
{
    memset(p, 0, sizeof *p);
    p->dir = dir;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        mk_die(MK_EXIT_USAGE, "%s: not a model directory", dir);
    char *path = mk_join(dir, "config.json");
    p->config = mk_read_file(path, &p->config_len);
    p->cfg = mk_parse_json(p->config, p->config_len, path);
    free(path);
    if (!cJSON_IsObject(p->cfg))
        mk_die(MK_EXIT_USAGE, "%s/config.json: not a JSON object", dir);
    const char *model_type = pa_json_str(p->cfg, "model_type");
    p->gpt2 = model_type && strcmp(model_type, "gpt2") == 0;

    path = mk_join(dir, "model.safetensors.index.json");
    if (access(path, F_OK) == 0) {
        size_t len;
        char *text = mk_read_file(path, &len);
        cJSON *index = mk_parse_json(text, len, path);
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
        if (!cJSON_IsObject(map) || !map->child)
            mk_die(MK_EXIT_USAGE, "%s: no weight_map", path);
        size_t n = 0, cap = 0;
        const char **files = NULL;
        for (const cJSON *e = map->child; e; e = e->next) {
            if (!cJSON_IsString(e))
                mk_die(MK_EXIT_USAGE, "%s: weight_map value is not a string", path);
            files = mk_grow(files, &cap, n + 1, sizeof *files);
            files[n++] = e->valuestring;
        }
        qsort(files, n, sizeof *files, cmp_str_ptr);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || strcmp(files[i], files[i - 1]) != 0)
                open_shard(p, files[i]);
        free(files);
        cJSON_Delete(index);
        free(text);
    } else {
        open_shard(p, "model.safetensors");
    }
    free(path);

    size_t cap = 0;
    for (size_t s = 0; s < p->n_shards; s++)
        for (size_t i = 0; i < p->shards[s].hdr.n_tensors; i++) {
            p->t = mk_grow(p->t, &cap, p->n + 1, sizeof *p->t);
            mk_src_tensor *t = &p->t[p->n++];
            memset(t, 0, sizeof *t);
            t->desc = &p->shards[s].hdr.tensors[i];
            t->shard = &p->shards[s];
            classify(t);
            if (t->layer + 1 > p->layers)
                p->layers = t->layer + 1;
        }
    if (p->n == 0)
        mk_die(MK_EXIT_USAGE, "%s: the model has no tensors", dir);
    const mk_src_tensor **sorted = mk_alloc(p->n, sizeof *sorted);
    for (size_t i = 0; i < p->n; i++)
        sorted[i] = &p->t[i];
    qsort(sorted, p->n, sizeof *sorted, cmp_src_name);
    for (size_t i = 1; i < p->n; i++)
        if (strcmp(sorted[i]->desc->name, sorted[i - 1]->desc->name) == 0)
            mk_die(MK_EXIT_USAGE, "%s: tensor %s appears in two shards", dir,
                   sorted[i]->desc->name);
    free(sorted);
}

void mk_parent_free(mk_parent *p)
{
    for (size_t s = 0; s < p->n_shards; s++) {
        close(p->shards[s].fd);
        pa_st_header_free(&p->shards[s].hdr);
        free(p->shards[s].path);
    }
    free(p->shards);
    free(p->t);
    cJSON_Delete(p->cfg);
    free(p->config);
}

void mk_parent_read(const mk_src_tensor *s, void *dst, uint64_t off, size_t len)
{
    uint64_t at = s->shard->hdr.data_offset + s->desc->begin + off;
    uint8_t *q = dst;
    while (len) {
        ssize_t r = pread(s->shard->fd, q, len, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            mk_die(MK_EXIT_USAGE, "%s: %s: read failed: %s", s->shard->path, s->desc->name,
                   r < 0 ? strerror(errno) : "file is shorter than its header says");
        q += r;
        len -= (size_t)r;
        at += (uint64_t)r;
    }
}
