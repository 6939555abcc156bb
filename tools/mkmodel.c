/* mkmodel — write Hugging Face-layout model directories deterministically from a seed, and derive
 * models from them (fine-tune, LoRA merge, conversion, quantization, pruning, vocabulary
 * extension, permutations, student, forgery, renaming, resharding, copy) to test lineage
 * detection. Same arguments, byte-identical output.
 *
 *   mkmodel create OUT [--arch llama|gpt2] [--seed N] [--hidden H] [--layers L] [--heads A]
 *                  [--kv-heads K] [--inter I] [--vocab V] [--max-pos P] [--dtype f32|f16|bf16]
 *                  [--shards N] [--tok-seed T] [--tie] [--spm]
 *   mkmodel derive PARENT OUT --kind KIND [--seed N] [--dtype D] [--shards N] [kind options]
 *   mkmodel gguf SRC OUT.gguf --type T;  mkmodel torch SRC OUT_DIR|OUT.pt
 */
#include "mkmodel.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: mkmodel create OUT [--arch llama|gpt2] [--seed N] [--hidden H] [--layers L]\n"
    "                      [--heads A] [--kv-heads K] [--inter I] [--vocab V] [--max-pos P]\n"
    "                      [--dtype f32|f16|bf16] [--shards N] [--tok-seed T] [--tie] [--spm]\n"
    "       mkmodel derive PARENT OUT --kind KIND [--seed N] [--dtype f32|f16|bf16] [--shards N]\n"
    "                      [--drift D] [--rank R] [--scale S] [--drop N | --keep LIST]\n"
    "                      [--keep-frac F] [--add N] [--with DIR] [--experts N]\n"
    "  kinds: finetune [--drift D]  lora [--rank R] [--scale S]  convert --dtype D  quant-int8\n"
    "         quant-q4  prune-layers [--drop N | --keep 0,1,3]  prune-mlp [--keep-frac F]\n"
    "         vocab-extend [--add N]  permute-mlp  permute-heads  student [--drift D]  forge\n"
    "         rename  reshard --shards N  copy\n"
    "         rotate  scale  noise [--drift D]  smuggle --with OTHER  soup --with SIBLING\n"
    "         stitch --with OTHER  upcycle [--experts N]\n"
    "         peft [--rank R]  (a PEFT LoRA adapter folder: adapter_config.json,\n"
    "         adapter_model.safetensors)\n"
    "       mkmodel gguf SRC OUT.gguf --type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k\n"
    "       mkmodel torch SRC OUT_DIR|OUT.pt   (torch.save checkpoints of SRC's tensors)\n";

/* ---------------------------------------------------------------- option parsing */

static int64_t parse_int(const char *opt, const char *s, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        mk_die(MK_EXIT_USAGE, "%s %s: expected an integer in [%lld, %lld]", opt, s, (long long)lo,
               (long long)hi);
    return v;
}

static uint64_t parse_seed(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-')
        mk_die(MK_EXIT_USAGE, "%s %s: expected a non-negative integer", opt, s);
    return v;
}

static double parse_real(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        mk_die(MK_EXIT_USAGE, "%s %s: expected a number in [%g, %g]", opt, s, lo, hi);
    return v;
}

static pa_dtype parse_dtype(const char *s)
{
    if (strcmp(s, "f32") == 0 || strcmp(s, "float32") == 0)
        return PA_DT_F32;
    if (strcmp(s, "f16") == 0 || strcmp(s, "float16") == 0)
        return PA_DT_F16;
    if (strcmp(s, "bf16") == 0 || strcmp(s, "bfloat16") == 0)
        return PA_DT_BF16;
    mk_die(MK_EXIT_USAGE, "--dtype %s: expected f32, f16 or bf16", s);
}

static const struct {
    const char *name;
    unsigned bit;
    bool takes_value;
} option_table[] = {
    {"--arch", MK_O_ARCH, true},       {"--seed", MK_O_SEED, true},
    {"--hidden", MK_O_HIDDEN, true},   {"--layers", MK_O_LAYERS, true},
    {"--heads", MK_O_HEADS, true},     {"--kv-heads", MK_O_KV_HEADS, true},
    {"--inter", MK_O_INTER, true},     {"--vocab", MK_O_VOCAB, true},
    {"--max-pos", MK_O_MAX_POS, true}, {"--dtype", MK_O_DTYPE, true},
    {"--shards", MK_O_SHARDS, true},   {"--tok-seed", MK_O_TOK_SEED, true},
    {"--tie", MK_O_TIE, false},        {"--kind", MK_O_KIND, true},
    {"--drift", MK_O_DRIFT, true},     {"--rank", MK_O_RANK, true},
    {"--scale", MK_O_SCALE, true},     {"--drop", MK_O_DROP, true},
    {"--keep", MK_O_KEEP, true},       {"--keep-frac", MK_O_KEEP_FRAC, true},
    {"--add", MK_O_ADD, true},         {"--with", MK_O_WITH, true},
    {"--experts", MK_O_EXPERTS, true}, {"--spm", MK_O_SPM, false},
};

static const char *option_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof option_table / sizeof option_table[0]; i++)
        if (option_table[i].bit == bit)
            return option_table[i].name;
    return "?";
}

/* Parse argv[first..] into opt; positional arguments land in pos (at most max_pos). */
static size_t parse_args(int argc, char **argv, int first, mk_options *opt, const char **pos,
                         size_t max_pos)
{
    size_t n_pos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0') {
            if (n_pos == max_pos)
                mk_die(MK_EXIT_USAGE, "unexpected argument '%s' (try --help)", a);
            pos[n_pos++] = a;
            continue;
        }
        size_t k = 0, n_opts = sizeof option_table / sizeof option_table[0];
        while (k < n_opts && strcmp(a, option_table[k].name) != 0)
            k++;
        if (k == n_opts)
            mk_die(MK_EXIT_USAGE, "unknown option '%s' (try --help)", a);
        unsigned bit = option_table[k].bit;
        if (opt->given & bit)
            mk_die(MK_EXIT_USAGE, "%s given twice", a);
        opt->given |= bit;
        if (!option_table[k].takes_value) {
            if (bit == MK_O_SPM)
                opt->spm = true;
            else
                opt->tie = true;
            continue;
        }
        if (i + 1 >= argc)
            mk_die(MK_EXIT_USAGE, "%s needs a value", a);
        const char *v = argv[++i];
        const int64_t big = INT64_C(1) << 24;
        switch (bit) {
        case MK_O_ARCH:
            opt->arch = v;
            break;
        case MK_O_SEED:
            opt->seed = parse_seed(a, v);
            break;
        case MK_O_TOK_SEED:
            opt->tok_seed = parse_seed(a, v);
            break;
        case MK_O_HIDDEN:
            opt->hidden = parse_int(a, v, 1, big);
            break;
        case MK_O_LAYERS:
            opt->layers = parse_int(a, v, 1, 100000);
            break;
        case MK_O_HEADS:
            opt->heads = parse_int(a, v, 1, big);
            break;
        case MK_O_KV_HEADS:
            opt->kv_heads = parse_int(a, v, 1, big);
            break;
        case MK_O_INTER:
            opt->inter = parse_int(a, v, 1, big);
            break;
        case MK_O_VOCAB:
            opt->vocab = parse_int(a, v, 1, big);
            break;
        case MK_O_MAX_POS:
            opt->max_pos = parse_int(a, v, 1, big);
            break;
        case MK_O_DTYPE:
            opt->dtype = parse_dtype(v);
            break;
        case MK_O_SHARDS:
            opt->shards = parse_int(a, v, 1, 99999);
            break;
        case MK_O_KIND:
            opt->kind = v;
            break;
        case MK_O_DRIFT:
            opt->drift = parse_real(a, v, 0.0, 100.0);
            break;
        case MK_O_SCALE:
            opt->scale = parse_real(a, v, -1000.0, 1000.0);
            break;
        case MK_O_KEEP_FRAC:
            opt->keep_frac = parse_real(a, v, 1e-9, 1.0);
            break;
        case MK_O_RANK:
            opt->rank = parse_int(a, v, 1, 65536);
            break;
        case MK_O_DROP:
            opt->drop = parse_int(a, v, 1, 100000);
            break;
        case MK_O_ADD:
            opt->add = parse_int(a, v, 1, big);
            break;
        case MK_O_KEEP:
            opt->keep = v;
            break;
        case MK_O_WITH:
            opt->with = v;
            break;
        case MK_O_EXPERTS:
            opt->experts = parse_int(a, v, 2, 256);
            break;
        default:
            break;
        }
    }
    return n_pos;
}

void mk_refuse_options(const mk_options *opt, unsigned allowed, const char *what)
{
    unsigned extra = opt->given & ~allowed;
    if (extra)
        mk_die(MK_EXIT_USAGE, "%s does not apply to %s", option_name(extra & -extra), what);
}

/* ---------------------------------------------------------------- create */

typedef struct create_ctx {
    uint64_t seed;
} create_ctx;

static void create_produce(void *ctx, const mk_tensor *t, mk_sink *sink)
{
    const create_ctx *c = ctx;
    mk_sink_generate(sink, t, c->seed, "weights");
}

typedef struct tensor_list {
    mk_tensor *t;
    size_t n, cap;
    pa_dtype dtype;
} tensor_list;

static void add_tensor(tensor_list *list, int init, uint32_t ndim, uint64_t d0, uint64_t d1,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void add_tensor(tensor_list *list, int init, uint32_t ndim, uint64_t d0, uint64_t d1,
                       const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    list->t = mk_grow(list->t, &list->cap, list->n + 1, sizeof *list->t);
    mk_tensor *t = &list->t[list->n++];
    memset(t, 0, sizeof *t);
    uint64_t shape[2] = {d0, d1};
    mk_tensor_set(t, name, list->dtype, ndim, shape);
    t->init = init;
}

static void llama_tensors(tensor_list *l, const mk_options *o)
{
    uint64_t h = (uint64_t)o->hidden, hd = h / (uint64_t)o->heads;
    uint64_t q = (uint64_t)o->heads * hd, kv = (uint64_t)o->kv_heads * hd, in = (uint64_t)o->inter;
    add_tensor(l, MK_INIT_WEIGHT, 2, (uint64_t)o->vocab, h, "model.embed_tokens.weight");
    for (int64_t i = 0; i < o->layers; i++) {
        const char *p = "model.layers";
        long long n = (long long)i;
        add_tensor(l, MK_INIT_WEIGHT, 2, q, h, "%s.%lld.self_attn.q_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, kv, h, "%s.%lld.self_attn.k_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, kv, h, "%s.%lld.self_attn.v_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, h, q, "%s.%lld.self_attn.o_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, in, h, "%s.%lld.mlp.gate_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, in, h, "%s.%lld.mlp.up_proj.weight", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, h, in, "%s.%lld.mlp.down_proj.weight", p, n);
        add_tensor(l, MK_INIT_NORM, 1, h, 0, "%s.%lld.input_layernorm.weight", p, n);
        add_tensor(l, MK_INIT_NORM, 1, h, 0, "%s.%lld.post_attention_layernorm.weight", p, n);
    }
    add_tensor(l, MK_INIT_NORM, 1, h, 0, "model.norm.weight");
    if (!o->tie)
        add_tensor(l, MK_INIT_WEIGHT, 2, (uint64_t)o->vocab, h, "lm_head.weight");
}

static void gpt2_tensors(tensor_list *l, const mk_options *o)
{
    uint64_t h = (uint64_t)o->hidden, in = (uint64_t)o->inter;
    add_tensor(l, MK_INIT_WEIGHT, 2, (uint64_t)o->vocab, h, "transformer.wte.weight");
    add_tensor(l, MK_INIT_WEIGHT, 2, (uint64_t)o->max_pos, h, "transformer.wpe.weight");
    for (int64_t i = 0; i < o->layers; i++) {
        const char *p = "transformer.h";
        long long n = (long long)i;
        add_tensor(l, MK_INIT_NORM, 1, h, 0, "%s.%lld.ln_1.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, h, 0, "%s.%lld.ln_1.bias", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, h, 3 * h, "%s.%lld.attn.c_attn.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, 3 * h, 0, "%s.%lld.attn.c_attn.bias", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, h, h, "%s.%lld.attn.c_proj.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, h, 0, "%s.%lld.attn.c_proj.bias", p, n);
        add_tensor(l, MK_INIT_NORM, 1, h, 0, "%s.%lld.ln_2.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, h, 0, "%s.%lld.ln_2.bias", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, h, in, "%s.%lld.mlp.c_fc.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, in, 0, "%s.%lld.mlp.c_fc.bias", p, n);
        add_tensor(l, MK_INIT_WEIGHT, 2, in, h, "%s.%lld.mlp.c_proj.weight", p, n);
        add_tensor(l, MK_INIT_BIAS, 1, h, 0, "%s.%lld.mlp.c_proj.bias", p, n);
    }
    add_tensor(l, MK_INIT_NORM, 1, h, 0, "transformer.ln_f.weight");
    add_tensor(l, MK_INIT_BIAS, 1, h, 0, "transformer.ln_f.bias");
}

static char *config_json(const mk_options *o, bool gpt2)
{
    const char *dt = mk_torch_dtype(o->dtype);
    if (gpt2) {
        char inner[32] = "null";
        if (o->given & MK_O_INTER)
            snprintf(inner, sizeof inner, "%lld", (long long)o->inter);
        return mk_printf("{\n  \"activation_function\": \"gelu_new\",\n"
                         "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
                         "  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n"
                         "  \"layer_norm_epsilon\": 1e-05,\n  \"model_type\": \"gpt2\",\n"
                         "  \"n_embd\": %lld,\n  \"n_head\": %lld,\n  \"n_inner\": %s,\n"
                         "  \"n_layer\": %lld,\n  \"n_positions\": %lld,\n"
                         "  \"torch_dtype\": \"%s\",\n  \"vocab_size\": %lld\n}\n",
                         (long long)o->hidden, (long long)o->heads, inner, (long long)o->layers,
                         (long long)o->max_pos, dt, (long long)o->vocab);
    }
    return mk_printf("{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n"
                     "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"hidden_act\": \"silu\",\n"
                     "  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n"
                     "  \"max_position_embeddings\": %lld,\n  \"model_type\": \"llama\",\n"
                     "  \"num_attention_heads\": %lld,\n  \"num_hidden_layers\": %lld,\n"
                     "  \"num_key_value_heads\": %lld,\n  \"rms_norm_eps\": 1e-06,\n"
                     "  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": %s,\n"
                     "  \"torch_dtype\": \"%s\",\n  \"vocab_size\": %lld\n}\n",
                     (long long)o->hidden, (long long)o->inter, (long long)o->max_pos,
                     (long long)o->heads, (long long)o->layers, (long long)o->kv_heads,
                     o->tie ? "true" : "false", dt, (long long)o->vocab);
}

void mk_create(const char *out, const mk_options *given)
{
    mk_options o = *given;
    mk_refuse_options(&o,
                      MK_O_ARCH | MK_O_SEED | MK_O_HIDDEN | MK_O_LAYERS | MK_O_HEADS |
                          MK_O_KV_HEADS | MK_O_INTER | MK_O_VOCAB | MK_O_MAX_POS | MK_O_DTYPE |
                          MK_O_SHARDS | MK_O_TOK_SEED | MK_O_TIE | MK_O_SPM,
                      "create");
    if (!o.arch)
        o.arch = "llama";
    bool gpt2 = strcmp(o.arch, "gpt2") == 0;
    if (!gpt2 && strcmp(o.arch, "llama") != 0)
        mk_die(MK_EXIT_USAGE, "--arch %s: expected llama or gpt2", o.arch);
    if (!(o.given & MK_O_SEED))
        o.seed = 1;
    if (!(o.given & MK_O_HIDDEN))
        o.hidden = 256;
    if (!(o.given & MK_O_LAYERS))
        o.layers = 4;
    if (!(o.given & MK_O_HEADS))
        o.heads = 8;
    if (!(o.given & MK_O_KV_HEADS))
        o.kv_heads = o.heads;
    if (!(o.given & MK_O_INTER))
        o.inter = gpt2 ? 4 * o.hidden : 688;
    if (!(o.given & MK_O_VOCAB))
        o.vocab = 1024;
    if (!(o.given & MK_O_MAX_POS))
        o.max_pos = 2048;
    if (!(o.given & MK_O_DTYPE))
        o.dtype = PA_DT_F32;
    if (!(o.given & MK_O_SHARDS))
        o.shards = 1;
    if (o.hidden % o.heads)
        mk_die(MK_EXIT_USAGE, "--hidden %lld is not a multiple of --heads %lld",
               (long long)o.hidden, (long long)o.heads);
    if (o.kv_heads > o.heads || o.heads % o.kv_heads)
        mk_die(MK_EXIT_USAGE, "--heads %lld is not a multiple of --kv-heads %lld",
               (long long)o.heads, (long long)o.kv_heads);
    if (gpt2 && o.kv_heads != o.heads)
        mk_die(MK_EXIT_USAGE, "--kv-heads does not apply to gpt2 (it has no grouped attention)");
    if (gpt2 && o.spm)
        mk_die(MK_EXIT_USAGE, "--spm applies to llama (gpt2 tokenizers are byte-level BPE)");
    if (gpt2 && (o.given & MK_O_TIE))
        mk_die(MK_EXIT_USAGE, "--tie does not apply to gpt2 (its lm_head is always tied)");
    if ((size_t)o.vocab < mk_tokenizer_min_vocab(gpt2))
        mk_die(MK_EXIT_USAGE, "--vocab %lld: the synthetic tokenizer needs at least %zu tokens",
               (long long)o.vocab, mk_tokenizer_min_vocab(gpt2));

    tensor_list list = {.dtype = o.dtype};
    if (gpt2)
        gpt2_tensors(&list, &o);
    else
        llama_tensors(&list, &o);
    if ((size_t)o.shards > list.n)
        mk_die(MK_EXIT_USAGE, "--shards %lld: the model has only %zu tensors", (long long)o.shards,
               list.n);

    mk_make_dir(out);
    char *config = config_json(&o, gpt2);
    mk_write_file(out, "config.json", config, strlen(config));
    free(config);
    char *tok = mk_tokenizer_json(gpt2, o.tok_seed, (size_t)o.vocab);
    if (o.spm) {
        size_t n = 0;
        uint8_t *model = mk_spm_model(tok, strlen(tok), "tokenizer.json", &n);
        mk_write_file(out, "tokenizer.model", model, n);
        free(model);
    } else {
        mk_write_file(out, "tokenizer.json", tok, strlen(tok));
    }
    free(tok);
    char *tok_config = mk_tokenizer_config_json(gpt2, o.max_pos);
    mk_write_file(out, "tokenizer_config.json", tok_config, strlen(tok_config));
    free(tok_config);
    create_ctx ctx = {.seed = o.seed};
    mk_write_weights(out, list.t, list.n, (size_t)o.shards, create_produce, &ctx);
    mk_tensors_free(list.t, list.n);
}

/* ---------------------------------------------------------------- main */

int mk_gguf_main(int argc, char **argv); /* mkmodel_gguf.c */
int mk_torch_main(int argc, char **argv); /* mkmodel_torch.c */

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? MK_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "gguf") == 0)
        return mk_gguf_main(argc, argv);
    if (strcmp(argv[1], "torch") == 0)
        return mk_torch_main(argc, argv);
    mk_options opt = {0};
    const char *pos[2] = {NULL, NULL};
    if (strcmp(argv[1], "create") == 0) {
        size_t n = parse_args(argc, argv, 2, &opt, pos, 1);
        if (n != 1)
            mk_die(MK_EXIT_USAGE, "create needs an output directory (try --help)");
        mk_create(pos[0], &opt);
    } else if (strcmp(argv[1], "derive") == 0) {
        size_t n = parse_args(argc, argv, 2, &opt, pos, 2);
        if (n != 2)
            mk_die(MK_EXIT_USAGE, "derive needs PARENT and OUT directories (try --help)");
        if (!opt.kind)
            mk_die(MK_EXIT_USAGE, "derive needs --kind (try --help)");
        mk_derive(pos[0], pos[1], &opt);
    } else {
        mk_die(MK_EXIT_USAGE, "unknown command '%s' (create, derive, gguf or torch; try --help)", argv[1]);
    }
    return 0;
}
