/* provctl graph: the store's lineage forest as Graphviz DOT (or SVG through Graphviz's dot). */
#include "provctl_graph.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct node {
    int64_t id;
    char *path; /* first path */
    int n_paths;
} node;

typedef struct graph {
    node *nodes;
    size_t n, cap;
    bool oom;
} graph;

static int collect(void *ctx, const char *path, int64_t model_id, const char *status,
                   int64_t dir_mtime_ns)
{
    (void)status;
    (void)dir_mtime_ns;
    graph *g = ctx;
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i].id == model_id) {
            g->nodes[i].n_paths++;
            return 0;
        }
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        node *p = realloc(g->nodes, cap * sizeof *p);
        if (!p) {
            g->oom = true;
            return 1;
        }
        g->nodes = p;
        g->cap = cap;
    }
    g->nodes[g->n].id = model_id;
    g->nodes[g->n].path = strdup(path);
    g->nodes[g->n].n_paths = 1;
    if (!g->nodes[g->n].path) {
        g->oom = true;
        return 1;
    }
    g->n++;
    return 0;
}

/* DOT string literal: quotes and backslashes escaped, control bytes dropped. */
static void dot_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '\n') {
            fputs("\\n", f); /* a line break inside a DOT label */
            continue;
        }
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static const char *status_color(const char *status)
{
    if (strcmp(status, "ready") == 0)
        return "palegreen";
    if (strcmp(status, "failed") == 0)
        return "lightpink";
    if (strcmp(status, "incomplete") == 0)
        return "khaki";
    return "lightgray";
}

static int write_dot(store_handle *st, const graph *g, bool all_edges, FILE *f)
{
    fprintf(f, "digraph provenance {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", "
               "fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (size_t i = 0; i < g->n; i++) {
        store_model m;
        if (store_model_by_id(st, g->nodes[i].id, &m) != 0)
            continue;
        char label[1200];
        snprintf(label, sizeof label, "%s%s\n%s%s%s", g->nodes[i].path,
                 g->nodes[i].n_paths > 1 ? " (+more paths)" : "", m.status,
                 m.digest[0] ? " " : "", m.digest[0] ? m.format : "");
        fprintf(f, "  m%lld [label=", (long long)m.id);
        dot_str(f, label);
        fprintf(f, ", fillcolor=%s];\n", status_color(m.status));
        store_model_clear(&m);
    }
    for (size_t i = 0; i < g->n; i++) {
        store_link *links = NULL;
        size_t n = 0;
        if (store_children(st, g->nodes[i].id, &links, &n) != 0)
            continue;
        for (size_t k = 0; k < n; k++) {
            /* a second parent of a model with several (share set, not the main one) is drawn
             * too, in navy with its share */
            bool other_parent = !links[k].is_parent && links[k].share == links[k].share;
            if (!links[k].is_parent && !other_parent && !all_edges)
                continue;
            char label[96];
            if (links[k].share == links[k].share && (other_parent || links[k].share < 0.9))
                snprintf(label, sizeof label, "%s %.4f, share %.0f%%", links[k].verdict,
                         links[k].score, 100 * links[k].share);
            else
                snprintf(label, sizeof label, "%s %.4f", links[k].verdict, links[k].score);
            fprintf(f, "  m%lld -> m%lld [label=", (long long)g->nodes[i].id,
                    (long long)links[k].id);
            dot_str(f, label);
            fprintf(f, "%s];\n", links[k].is_parent ? ""
                                 : other_parent     ? ", color=navy"
                                                    : ", style=dashed, color=gray50");
        }
        store_links_free(links, n);
    }
    fprintf(f, "}\n");
    return ferror(f) ? -1 : 0;
}

static bool have_dot(void)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char *copy = strdup(path);
    bool found = false;
    for (char *save = NULL, *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof full, "%s/dot", dir);
        found = access(full, X_OK) == 0;
    }
    free(copy);
    return found;
}

int provctl_graph(int argc, char **argv)
{
    const char *db = NULL, *svg = NULL;
    bool all_edges = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db = argv[++i];
        else if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc)
            svg = argv[++i];
        else if (strcmp(argv[i], "--dot") == 0)
            ;
        else if (strcmp(argv[i], "--all-edges") == 0)
            all_edges = true;
        else {
            fprintf(stderr, "provctl graph: unexpected argument '%s'\n"
                            "usage: provctl graph --db FILE [--dot | --svg OUT] [--all-edges]\n",
                    argv[i]);
            return 2;
        }
    }
    if (!db) {
        fprintf(stderr, "provctl graph: --db FILE is required\n");
        return 2;
    }
    if (svg && !have_dot()) {
        fprintf(stderr, "provctl graph: %s: Graphviz 'dot' is not installed (apt-get install "
                        "graphviz), use --dot\n", svg);
        return 2;
    }
    char errbuf[256] = "";
    store_handle *st = NULL;
    if (store_open(db, STORE_READONLY, &st, errbuf, sizeof errbuf) != 0) {
        fprintf(stderr, "provctl graph: %s: %s\n", db, errbuf[0] ? errbuf : "cannot open");
        return 2;
    }
    graph g = {0};
    int rc = store_each_path(st, collect, &g);
    if (rc != 0 || g.oom) {
        fprintf(stderr, "provctl graph: %s: cannot read the models\n", db);
        rc = 2;
        goto out;
    }
    if (!svg) {
        rc = write_dot(st, &g, all_edges, stdout) == 0 ? 0 : 2;
        goto out;
    }
    /* SVG: DOT through Graphviz */
    char cmd[4200];
    char quoted[4096];
    size_t q = 0;
    quoted[q++] = '\'';
    for (const char *p = svg; *p && q + 5 < sizeof quoted; p++) {
        if (*p == '\'') {
            memcpy(quoted + q, "'\\''", 4);
            q += 4;
        } else {
            quoted[q++] = *p;
        }
    }
    quoted[q++] = '\'';
    quoted[q] = '\0';
    snprintf(cmd, sizeof cmd, "dot -Tsvg -o %s", quoted);
    FILE *pipe = popen(cmd, "w");
    if (!pipe) {
        fprintf(stderr, "provctl graph: %s: cannot run dot: %s\n", svg, strerror(errno));
        rc = 2;
        goto out;
    }
    int wrc = write_dot(st, &g, all_edges, pipe);
    int prc = pclose(pipe);
    if (wrc != 0 || prc == -1 || !WIFEXITED(prc) || WEXITSTATUS(prc) != 0) {
        fprintf(stderr, "provctl graph: %s: dot failed\n", svg);
        rc = 2;
    }
out:
    for (size_t i = 0; i < g.n; i++)
        free(g.nodes[i].path);
    free(g.nodes);
    store_close(st);
    return rc;
}
