/* provctl sbom PATH [--format cyclonedx] [--out FILE]: a lineage bill of materials.
 *
 * A CycloneDX 1.6 JSON document for one model of a mounted store, built from what the mount
 * serves (the unit's .provenance and those of its ancestors), never from the database:
 *   metadata.component   the model: type machine-learning-model, its content digest and every
 *                        file's SHA-256 (as nested file components), architecture in modelCard,
 *                        status, approval and policy decision as provfs:* properties;
 *   pedigree.ancestors   every ancestor, nearest first, each with its own digest when the store
 *                        holds it, and its verdict, score and generation as properties (a
 *                        reference-set ancestor has no digest: it is named by the set);
 * Paths and names come from users: cJSON escapes them for JSON; nothing is printed raw. */
#include "provctl_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ERR 2
#define SBOM_MAX_ANCESTORS 256

#ifndef PROVFS_VERSION
#define PROVFS_VERSION "0.1.0"
#endif

static void add_property(cJSON *props, const char *name, const char *value)
{
    if (!value)
        return;
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return;
    cJSON_AddStringToObject(p, "name", name);
    cJSON_AddStringToObject(p, "value", value);
    cJSON_AddItemToArray(props, p);
}

static void add_number_property(cJSON *props, const char *name, const cJSON *num, const char *fmt)
{
    if (!cJSON_IsNumber(num))
        return;
    char text[64];
    snprintf(text, sizeof text, fmt, num->valuedouble);
    add_property(props, name, text);
}

static bool is_sha256(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

static void add_hash(cJSON *component, const char *sha256)
{
    if (!is_sha256(sha256))
        return;
    cJSON *hashes = cJSON_AddArrayToObject(component, "hashes");
    cJSON *h = cJSON_CreateObject();
    if (!hashes || !h) {
        cJSON_Delete(h);
        return;
    }
    cJSON_AddStringToObject(h, "alg", "SHA-256");
    cJSON_AddStringToObject(h, "content", sha256);
    cJSON_AddItemToArray(hashes, h);
}

/* The last path element of a store path ("/team/llama" -> "llama"). */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* The description of the model at store path `want` in a loaded .provenance: the document
 * itself, or the entry of its "units" array (a model that is a single file). */
static const cJSON *unit_in(const cJSON *prov, const char *want)
{
    const char *p = str_member(prov, "path");
    if (p && strcmp(p, want) == 0)
        return prov;
    const cJSON *u;
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(prov, "units"))
    {
        p = str_member(u, "path");
        if (p && strcmp(p, want) == 0)
            return u;
    }
    return NULL;
}

/* A machine-learning-model component for one unit's description. */
static cJSON *model_component(const cJSON *u, const char *store_path, bool with_files)
{
    cJSON *c = cJSON_CreateObject();
    if (!c)
        return NULL;
    const char *sha = str_member(u, "sha256"), *id = str_member(u, "id");
    char ref[128];
    cJSON_AddStringToObject(c, "type", "machine-learning-model");
    /* unique within the document: the store's model id (two models may hold equal bytes) */
    if (id && strlen(id) < 32 && strspn(id, "0123456789") == strlen(id)) {
        snprintf(ref, sizeof ref, "provfs:model:%s", id);
        cJSON_AddStringToObject(c, "bom-ref", ref);
    }
    cJSON_AddStringToObject(c, "name", base_name(store_path));
    add_hash(c, sha);
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(u, "architecture");
    const char *mtype = str_member(arch, "model_type");
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(arch, "architectures");
    const cJSON *first = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (mtype || cJSON_IsString(first)) {
        cJSON *card = cJSON_AddObjectToObject(c, "modelCard");
        cJSON *params = card ? cJSON_AddObjectToObject(card, "modelParameters") : NULL;
        if (params && mtype)
            cJSON_AddStringToObject(params, "architectureFamily", mtype);
        if (params && cJSON_IsString(first))
            cJSON_AddStringToObject(params, "modelArchitecture", first->valuestring);
    }
    cJSON *props = cJSON_AddArrayToObject(c, "properties");
    add_property(props, "provfs:path", store_path);
    add_property(props, "provfs:status", str_member(u, "status"));
    add_property(props, "provfs:format", str_member(u, "format"));
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(u, "weights");
    add_number_property(props, "provfs:parameter_count",
                        cJSON_GetObjectItemCaseSensitive(w, "parameter_count"), "%.0f");
    if (with_files) {
        cJSON *files = NULL;
        const cJSON *f;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(u, "files"))
        {
            const char *name = str_member(f, "name");
            if (!name)
                continue;
            if (!files && !(files = cJSON_AddArrayToObject(c, "components")))
                break;
            cJSON *fc = cJSON_CreateObject();
            if (!fc)
                break;
            cJSON_AddStringToObject(fc, "type", "file");
            cJSON_AddStringToObject(fc, "name", name);
            add_hash(fc, str_member(f, "sha256"));
            cJSON_AddItemToArray(files, fc);
        }
    }
    return c;
}

/* RFC 4122 version 4 UUID as urn:uuid:... */
static void new_serial(char out[46])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (getpid() >> (i % 2 * 8)) ^ i);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 46,
             "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* One ancestor as a component: its own .provenance (through the mount at root) gives its
 * digest and architecture; a reference-set ancestor or one the mount cannot show is described
 * by the link alone. */
static cJSON *ancestor_component(const char *root, const cJSON *link, int generation)
{
    const char *apath = str_member(link, "path");
    bool reference = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(link, "reference")) ||
                     (apath && strncmp(apath, "ref:", 4) == 0);
    cJSON *c = NULL;
    unit_view av = {0};
    if (apath && apath[0] == '/' && !reference) {
        char full[PATH_MAX * 2];
        snprintf(full, sizeof full, "%s%s", root, apath);
        /* quietly: an ancestor that moved or is not readable still appears, by its link */
        int saved = dup(STDERR_FILENO), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        int rc = unit_load(full, &av);
        if (saved >= 0) {
            dup2(saved, STDERR_FILENO);
            close(saved);
        }
        if (devnull >= 0)
            close(devnull);
        const cJSON *u = rc == 0 ? unit_in(av.prov, apath) : NULL;
        if (u)
            c = model_component(u, apath, false);
    }
    if (!c) {
        c = cJSON_CreateObject();
        if (!c) {
            unit_clear(&av);
            return NULL;
        }
        const char *name = str_member(link, "name");
        cJSON_AddStringToObject(c, "type", "machine-learning-model");
        cJSON_AddStringToObject(c, "name",
                                name ? name : apath ? base_name(apath) : "(unknown ancestor)");
        cJSON *props = cJSON_AddArrayToObject(c, "properties");
        add_property(props, "provfs:path", apath);
        add_property(props, "provfs:id", str_member(link, "id"));
    }
    cJSON *props = cJSON_GetObjectItemCaseSensitive(c, "properties");
    char gen[16];
    snprintf(gen, sizeof gen, "%d", generation);
    add_property(props, "provfs:generation", gen);
    add_property(props, "provfs:verdict", str_member(link, "verdict"));
    add_number_property(props, "provfs:score", cJSON_GetObjectItemCaseSensitive(link, "score"),
                        "%.4f");
    if (reference) {
        add_property(props, "provfs:reference", "true");
        add_property(props, "provfs:family", str_member(link, "family"));
    }
    unit_clear(&av);
    return c;
}

int provctl_sbom(int argc, char **argv)
{
    const char *path = NULL, *format = "cyclonedx", *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "usage: provctl sbom PATH [--format cyclonedx] [--out FILE]\n");
            return EXIT_ERR;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "usage: provctl sbom PATH [--format cyclonedx] [--out FILE]\n");
        return EXIT_ERR;
    }
    if (strcmp(format, "cyclonedx") != 0) {
        fprintf(stderr, "provctl sbom: unknown format '%s' (known: cyclonedx)\n", format);
        return EXIT_ERR;
    }
    unit_view v;
    int rc = unit_load(path, &v);
    if (rc)
        return rc;
    const cJSON *u = v.prov; /* unit_load: for a one-file model, its entry of "units" */
    const char *store_path = str_member(v.prov, "path");
    if (!store_path || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(u, "model"))) {
        fprintf(stderr, "provctl: %s: not a model unit\n", path);
        unit_clear(&v);
        return EXIT_ERR;
    }
    /* The mount's root: the unit's directory less its store path. */
    char root[PATH_MAX];
    const char *dir_store = str_member(v.prov, "path");
    size_t dl = strlen(v.dir), sl = dir_store ? strlen(dir_store) : 0;
    if (dir_store && strcmp(dir_store, "/") == 0)
        sl = 0;
    if (sl <= dl && strcmp(v.dir + dl - sl, dir_store ? dir_store : "") == 0)
        snprintf(root, sizeof root, "%.*s", (int)(dl - sl), v.dir);
    else
        snprintf(root, sizeof root, "%s", v.dir);

    cJSON *bom = cJSON_CreateObject();
    char serial[46], stamp[32];
    new_serial(serial);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON *model = model_component(u, store_path, true);
    bool ok = bom && model;
    if (ok) {
        cJSON_AddStringToObject(bom, "$schema", "http://cyclonedx.org/schema/bom-1.6.schema.json");
        cJSON_AddStringToObject(bom, "bomFormat", "CycloneDX");
        cJSON_AddStringToObject(bom, "specVersion", "1.6");
        cJSON_AddStringToObject(bom, "serialNumber", serial);
        cJSON_AddNumberToObject(bom, "version", 1);
        cJSON *meta = cJSON_AddObjectToObject(bom, "metadata");
        cJSON_AddStringToObject(meta, "timestamp", stamp);
        cJSON *tools = cJSON_AddObjectToObject(meta, "tools");
        cJSON *tcomps = cJSON_AddArrayToObject(tools, "components");
        cJSON *tool = cJSON_CreateObject();
        cJSON_AddStringToObject(tool, "type", "application");
        cJSON_AddStringToObject(tool, "name", "provctl");
        cJSON_AddStringToObject(tool, "version", PROVFS_VERSION);
        cJSON_AddItemToArray(tcomps, tool);

        /* approval and policy decision of the model itself */
        cJSON *props = cJSON_GetObjectItemCaseSensitive(model, "properties");
        const cJSON *appr = cJSON_GetObjectItemCaseSensitive(u, "approval");
        add_property(props, "provfs:approval", approval_label(u));
        add_property(props, "provfs:approval.by", str_member(appr, "by"));
        add_property(props, "provfs:approval.at", str_member(appr, "at"));
        add_property(props, "provfs:approval.note", str_member(appr, "note"));
        const cJSON *pol = cJSON_GetObjectItemCaseSensitive(u, "policy");
        add_property(props, "provfs:policy.decision", str_member(pol, "decision"));
        add_property(props, "provfs:policy.rule", str_member(pol, "rule"));
        add_property(props, "provfs:policy.reason", str_member(pol, "reason"));
        add_property(props, "provfs:policy.mode", str_member(pol, "mode"));
        const cJSON *lin = cJSON_GetObjectItemCaseSensitive(u, "lineage");
        const cJSON *unknown = cJSON_GetObjectItemCaseSensitive(lin, "unknown_origin");
        if (cJSON_IsBool(unknown))
            add_property(props, "provfs:unknown_origin", cJSON_IsTrue(unknown) ? "true" : "false");
        add_number_property(props, "provfs:unexplained_share",
                            cJSON_GetObjectItemCaseSensitive(lin, "unexplained_share"), "%.4f");

        const cJSON *anc = cJSON_GetObjectItemCaseSensitive(lin, "ancestors");
        if (cJSON_GetArraySize(anc) > 0) {
            cJSON *ped = cJSON_AddObjectToObject(model, "pedigree");
            cJSON *arr = ped ? cJSON_AddArrayToObject(ped, "ancestors") : NULL;
            int gen = 0;
            const cJSON *link;
            cJSON_ArrayForEach(link, anc)
            {
                if (++gen > SBOM_MAX_ANCESTORS || !arr)
                    break;
                cJSON *ac = ancestor_component(root, link, gen);
                if (ac)
                    cJSON_AddItemToArray(arr, ac);
            }
        }
        cJSON_AddItemToObject(meta, "component", model);
        model = NULL;
    }
    cJSON_Delete(model);
    char *text = ok ? cJSON_Print(bom) : NULL;
    cJSON_Delete(bom);
    unit_clear(&v);
    if (!text) {
        fprintf(stderr, "provctl: %s: out of memory\n", path);
        return EXIT_ERR;
    }
    int ret = 0;
    if (out) {
        FILE *f = fopen(out, "we");
        bool written = f && fprintf(f, "%s\n", text) >= 0;
        if (f && fclose(f) != 0)
            written = false;
        if (!written) {
            fprintf(stderr, "provctl: %s: %s\n", out, strerror(errno));
            ret = EXIT_ERR;
        }
    } else {
        puts(text);
    }
    free(text);
    return ret;
}
