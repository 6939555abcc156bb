/* PEFT (LoRA) adapters: adapter_config.json, and whether an adapter's tensors fit a base model.
 *
 * A LoRA adapter holds, for each adapted module M of its base (a linear layer whose weight is
 * [out, in]), two matrices: M.lora_A.weight [r, in] and M.lora_B.weight [out, r], saved under
 * "base_model.model." + M (PEFT's wrapper prefix). The adapter names its base in
 * adapter_config.json (base_model_name_or_path): a declaration, checked here against the base's
 * own tensor shapes before anything trusts it.
 */
#include "fp.h"
#include "jsonutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEFT_MAX_TARGETS 256u
#define PEFT_MAX_NAME 256u

void pa_peft_config_free(pa_peft_config *c)
{
    if (!c)
        return;
    free(c->base);
    free(c->peft_type);
    for (size_t i = 0; i < c->n_targets; i++)
        free(c->targets[i]);
    free(c->targets);
    memset(c, 0, sizeof *c);
}

/* A string of at most PEFT_MAX_NAME bytes with no control character. */
static bool plain_string(const cJSON *v)
{
    if (!cJSON_IsString(v) || !v->valuestring)
        return false;
    size_t n = strlen(v->valuestring);
    if (n == 0 || n > PEFT_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v->valuestring[i] < 0x20 || v->valuestring[i] == 0x7f)
            return false;
    return true;
}

pa_status pa_peft_config_parse(const char *text, size_t len, const char *label, pa_peft_config *out,
                               pa_error *err)
{
    memset(out, 0, sizeof *out);
    out->r = PA_NULL_INT;
    cJSON *root = pa_json_parse(text, len, label, err);
    if (!root)
        return err->status;
    pa_status st = PA_OK;
    if (!cJSON_IsObject(root)) {
        st = pa_error_set(err, PA_E_FORMAT, "%s: not a JSON object", label);
        goto out;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path");
    if (v && !cJSON_IsNull(v)) {
        if (!plain_string(v)) {
            st = pa_error_set(err, PA_E_FORMAT,
                              "%s: \"base_model_name_or_path\" must be a string of 1..%u "
                              "printable bytes",
                              label, PEFT_MAX_NAME);
            goto out;
        }
        if (!(out->base = strdup(v->valuestring))) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto out;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (v && !cJSON_IsNull(v)) {
        if (!plain_string(v)) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: \"peft_type\" must be a string", label);
            goto out;
        }
        if (!(out->peft_type = strdup(v->valuestring))) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto out;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (v && !cJSON_IsNull(v)) {
        int64_t r;
        if (!pa_json_int(root, "r", &r) || r < 1 || r > 65536) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: \"r\" must be an integer in 1..65536", label);
            goto out;
        }
        out->r = r;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > 1e9) {
            st = pa_error_set(err, PA_E_FORMAT, "%s: \"lora_alpha\" must be a positive number",
                              label);
            goto out;
        }
        out->lora_alpha = v->valuedouble;
    }
    /* target_modules: a list of module names, or one string (a name or a regex) */
    v = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (v && !cJSON_IsNull(v)) {
        size_t n = cJSON_IsArray(v) ? (size_t)cJSON_GetArraySize(v) : 1;
        if ((!cJSON_IsArray(v) && !plain_string(v)) || n > PEFT_MAX_TARGETS) {
            st = pa_error_set(err, PA_E_FORMAT,
                              "%s: \"target_modules\" must be a string or at most %u strings",
                              label, PEFT_MAX_TARGETS);
            goto out;
        }
        out->targets = calloc(n ? n : 1, sizeof *out->targets);
        if (!out->targets) {
            st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
            goto out;
        }
        const cJSON *e = cJSON_IsArray(v) ? v->child : v;
        for (size_t i = 0; i < n && e; i++, e = cJSON_IsArray(v) ? e->next : NULL) {
            if (!plain_string(e)) {
                st = pa_error_set(err, PA_E_FORMAT, "%s: \"target_modules\"[%zu] must be a string",
                                  label, i);
                goto out;
            }
            if (!(out->targets[i] = strdup(e->valuestring))) {
                st = pa_error_set(err, PA_E_NOMEM, "%s: out of memory", label);
                goto out;
            }
            out->n_targets = i + 1;
        }
    }
out:
    cJSON_Delete(root);
    if (st)
        pa_peft_config_free(out);
    return st;
}

/* "base_model.model.X.lora_A[.NAME].weight" -> X (len in *ml), which 'A' or 'B'; false else. */
static bool lora_name(const char *name, const char **mod, size_t *ml, char *which)
{
    static const char prefix[] = "base_model.model.";
    size_t pl = sizeof prefix - 1, n = strlen(name);
    if (n <= pl || strncmp(name, prefix, pl) != 0 || n < 7 ||
        strcmp(name + n - 7, ".weight") != 0)
        return false;
    const char *p = strstr(name + pl, ".lora_");
    if (!p || (p[6] != 'A' && p[6] != 'B'))
        return false;
    const char *rest = p + 7; /* "" -> ".weight", or ".NAME.weight" */
    if (rest != name + n - 7) {
        if (*rest != '.' || memchr(rest + 1, '.', (size_t)(name + n - 7 - rest - 1)))
            return false;
    }
    *mod = name + pl;
    *ml = (size_t)(p - *mod);
    *which = p[6];
    return *ml > 0;
}

static const pa_tensor_fp *find_tensor(const pa_fingerprint *fp, const char *name)
{
    size_t lo = 0, hi = fp->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(fp->tensors[mid].name, name);
        if (c == 0)
            return &fp->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void problem(pa_peft_check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(pa_peft_check *c, const char *fmt, ...)
{
    if (c->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->problem, sizeof c->problem, fmt, ap);
    va_end(ap);
}

/* module names in messages: at most 120 bytes */
#define MOD(ml, mod) (int)((ml) < 120 ? (ml) : 120), (mod)

void pa_peft_check_shapes(const pa_fingerprint *base, const pa_fingerprint *adapter,
                          pa_peft_check *out)
{
    memset(out, 0, sizeof *out);
    out->rank = -1;
    for (size_t i = 0; i < adapter->n_tensors; i++) {
        const pa_tensor_fp *a = &adapter->tensors[i];
        const char *mod;
        size_t ml;
        char which;
        if (!lora_name(a->name, &mod, &ml, &which)) {
            out->n_other++;
            continue;
        }
        if (which != 'A')
            continue;
        out->n_pairs++;
        /* its B: the same name with lora_B */
        char bname[PEFT_MAX_NAME * 2], wname[PEFT_MAX_NAME * 2];
        size_t an = strlen(a->name);
        if (an >= sizeof bname || ml + 8 >= sizeof wname) {
            out->n_mismatched++;
            problem(out, "%.*s: name too long", MOD(ml, mod));
            continue;
        }
        memcpy(bname, a->name, an + 1);
        bname[(size_t)(mod - a->name) + ml + 6] = 'B';
        const pa_tensor_fp *b = find_tensor(adapter, bname);
        snprintf(wname, sizeof wname, "%.*s.weight", (int)ml, mod);
        const pa_tensor_fp *w = find_tensor(base, wname);
        if (!w) {
            out->n_missing++;
            problem(out, "%.*s: no such module in the base", MOD(ml, mod));
            continue;
        }
        if (!b || a->ndim != 2 || b->ndim != 2 || w->ndim != 2) {
            out->n_mismatched++;
            problem(out, "%.*s: lora_A/lora_B are not a pair of matrices", MOD(ml, mod));
            continue;
        }
        uint64_t r = a->shape[0], in = a->shape[1], out_d = b->shape[0];
        if (b->shape[1] != r || w->shape[0] != out_d || w->shape[1] != in) {
            out->n_mismatched++;
            problem(out, "%.*s: lora_B x lora_A is %llux%llu, the base weight %llux%llu",
                    MOD(ml, mod), (unsigned long long)out_d, (unsigned long long)in,
                    (unsigned long long)w->shape[0], (unsigned long long)w->shape[1]);
            continue;
        }
        out->n_matched++;
        out->rank = out->n_matched == 1 ? (int64_t)r : out->rank == (int64_t)r ? out->rank : 0;
    }
    for (size_t i = 0; i < adapter->n_tensors; i++) {
        const char *mod;
        size_t ml;
        char which;
        if (lora_name(adapter->tensors[i].name, &mod, &ml, &which) && which == 'B') {
            char aname[PEFT_MAX_NAME * 2];
            size_t bn = strlen(adapter->tensors[i].name);
            if (bn >= sizeof aname)
                continue;
            memcpy(aname, adapter->tensors[i].name, bn + 1);
            aname[(size_t)(mod - adapter->tensors[i].name) + ml + 6] = 'A';
            if (!find_tensor(adapter, aname)) {
                out->n_mismatched++;
                problem(out, "%.*s: lora_B without lora_A", MOD(ml, mod));
            }
        }
    }
}

bool pa_peft_fits(const pa_peft_check *c)
{
    return c->n_pairs > 0 && c->n_matched == c->n_pairs && c->n_mismatched == 0 &&
           c->n_missing == 0;
}

bool pa_peft_is_adapter(const pa_fingerprint *fp)
{
    for (size_t i = 0; i < fp->n_tensors; i++) {
        const char *mod;
        size_t ml;
        char which;
        if (lora_name(fp->tensors[i].name, &mod, &ml, &which))
            return true;
    }
    return false;
}

/* The component of s ending before *end (skipping slashes): its start, its length in *len; NULL
 * when none is left. *end moves to the start. */
static const char *prev_component(const char *s, size_t *end, size_t *len)
{
    size_t e = *end;
    while (e > 0 && s[e - 1] == '/')
        e--;
    size_t b = e;
    while (b > 0 && s[b - 1] != '/')
        b--;
    *end = b;
    *len = e - b;
    return e > b ? s + b : NULL;
}

size_t pa_peft_base_match(const char *declared, const char *path)
{
    if (!declared || !path || !declared[0] || !path[0])
        return 0;
    size_t dl = strlen(declared), pl = strlen(path);
    /* trailing components, compared from the end, until one side runs out */
    size_t de = dl, pe = pl, matched = 0, dn, pn;
    const char *dc, *pc;
    for (;;) {
        dc = prev_component(declared, &de, &dn);
        pc = prev_component(path, &pe, &pn);
        if (!dc || !pc || dn != pn || memcmp(dc, pc, dn) != 0 || strcmp(dc, ".") == 0 ||
            (dn == 2 && memcmp(dc, "..", 2) == 0))
            break;
        matched += dn + 1;
    }
    /* a whole side matched (the other may go on: a mount point, or a shorter store path) */
    if (matched && (!dc || !pc))
        return matched;
    /* a hub id "org/name" and a Hugging Face cache repo directory "models--org--name" */
    const char *slash = strchr(declared, '/');
    if (declared[0] != '/' && slash && !strchr(slash + 1, '/') && dl < 200) {
        char repo[256];
        snprintf(repo, sizeof repo, "models--%.*s--%s", (int)(slash - declared), declared,
                 slash + 1);
        size_t rl = strlen(repo);
        for (const char *p = strstr(path, repo); p; p = strstr(p + 1, repo))
            if ((p == path || p[-1] == '/') && (p[rl] == '\0' || p[rl] == '/'))
                return rl;
    }
    return 0;
}
