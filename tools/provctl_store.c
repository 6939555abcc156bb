/* provctl lineage / approve / revoke / log / check.
 *
 * lineage, approve, revoke and check talk to a mounted store only through the mount: the
 * user.provenance.* xattrs and the `.provenance` file of the unit's directory (so they work for
 * every user the mount lets in, and never disagree with what the daemon serves). log reads the
 * events table of a lineage database, opened read-only.
 */
#include "provctl_store.h"
#include "control.h"

#include "db.h"
#include "policy.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define EXIT_ERR 2
#define EXIT_REFUSED 3
#define VFILE_MAX (64u << 20)

/* ---------------------------------------------------------------- arguments */

typedef struct opt_spec {
    const char *flag;
    bool takes_value;
    const char **value; /* set to the value, or to the flag itself when it takes none */
} opt_spec;

/* Splits argv into the flags of specs and positionals (at most max_pos). An unknown option or a
 * missing value is an error; returns the number of positionals, or -1 after a message. */
static int parse_opts(const char *cmd, int argc, char **argv, const opt_spec *specs, size_t n_specs,
                      const char **pos, int max_pos)
{
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1]) {
            size_t k = 0;
            while (k < n_specs && strcmp(a, specs[k].flag) != 0)
                k++;
            if (k == n_specs) {
                fprintf(stderr, "provctl %s: unknown option %s\n", cmd, a);
                return -1;
            }
            if (specs[k].takes_value) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "provctl %s: %s needs a value\n", cmd, a);
                    return -1;
                }
                *specs[k].value = argv[++i];
            } else {
                *specs[k].value = a;
            }
            continue;
        }
        if (n >= max_pos) {
            fprintf(stderr, "provctl %s: unexpected argument %s\n", cmd, a);
            return -1;
        }
        pos[n++] = a;
    }
    return n;
}

static bool parse_count(const char *text, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0 || v > max)
        return false;
    *out = v;
    return true;
}

/* ---------------------------------------------------------------- reading a unit */

/* Reads a whole (virtual) file: the size stat reports is not trusted, reads go to EOF. */
static int read_all(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    size_t cap = 16384, n = 0;
    char *buf = malloc(cap + 1);
    int err = buf ? 0 : ENOMEM;
    while (!err) {
        if (n == cap) {
            if (cap >= VFILE_MAX) {
                err = EFBIG;
                break;
            }
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                err = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = errno;
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    close(fd);
    if (err) {
        free(buf);
        return err;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Fills v for path (a model directory or a file in one). Returns 0, or EXIT_ERR after one line on
 * stderr: no such path, not in a provfs store, not a model unit. */
int unit_load(const char *path, unit_view *v)
{
    memset(v, 0, sizeof *v);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "provctl: %s: %s\n", path, strerror(errno));
        return EXIT_ERR;
    }
    if (S_ISDIR(sb.st_mode)) {
        snprintf(v->dir, sizeof v->dir, "%s", path);
    } else {
        const char *slash = strrchr(path, '/');
        if (!slash)
            snprintf(v->dir, sizeof v->dir, ".");
        else if (slash == path)
            snprintf(v->dir, sizeof v->dir, "/");
        else
            snprintf(v->dir, sizeof v->dir, "%.*s", (int)(slash - path), path);
    }
    char vpath[PATH_MAX + 16];
    snprintf(vpath, sizeof vpath, "%s/.provenance", v->dir);
    char *text = NULL;
    size_t len = 0;
    int err = read_all(vpath, &text, &len);
    if (err == ENOENT || err == ENOTDIR) {
        fprintf(stderr, "provctl: %s: not in a provfs store (no .provenance in %s)\n", path,
                v->dir);
        return EXIT_ERR;
    }
    if (err) {
        fprintf(stderr, "provctl: %s: %s\n", vpath, strerror(err));
        return EXIT_ERR;
    }
    v->prov = cJSON_ParseWithLength(text, len);
    free(text);
    /* A model that is one file (GGUF, a lone weights file) is an entry of its directory's
     * "units"; its xattrs are on the file, so the file stands for the unit from here on. */
    if (!S_ISDIR(sb.st_mode) && cJSON_IsObject(v->prov)) {
        const char *dpath = str_member(v->prov, "path");
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        cJSON *u;
        cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(v->prov, "units"))
        {
            const char *upath = str_member(u, "path");
            size_t dl = dpath ? strlen(dpath) : 0;
            if (dpath && strcmp(dpath, "/") == 0)
                dl = 0;
            if (upath && dpath && strncmp(upath, dpath, dl) == 0 && upath[dl] == '/' &&
                strcmp(upath + dl + 1, base) == 0) {
                cJSON *unit = cJSON_DetachItemViaPointer(
                    cJSON_GetObjectItemCaseSensitive(v->prov, "units"), u);
                cJSON_Delete(v->prov);
                v->prov = unit;
                if (!cJSON_GetObjectItemCaseSensitive(unit, "schema"))
                    cJSON_AddStringToObject(unit, "schema", "provfs.provenance/1");
                snprintf(v->dir, sizeof v->dir, "%s", path);
                break;
            }
        }
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(v->prov, "schema");
    if (!cJSON_IsString(schema)) {
        fprintf(stderr, "provctl: %s: not a provfs .provenance file (not in a provfs store)\n",
                vpath);
        goto fail;
    }
    if (strcmp(schema->valuestring, "provfs.store/1") == 0) {
        fprintf(stderr, "provctl: %s: not a model unit (the store root)\n", path);
        goto fail;
    }
    if (strcmp(schema->valuestring, "provfs.provenance/1") != 0) {
        fprintf(stderr, "provctl: %s: unknown .provenance schema %s\n", vpath, schema->valuestring);
        goto fail;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(v->prov, "model");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(v->prov, "status");
    if (cJSON_IsFalse(model) || !cJSON_IsString(status)) {
        fprintf(stderr, "provctl: %s: not a model unit\n", path);
        goto fail;
    }
    v->status = status->valuestring;
    return 0;
fail:
    cJSON_Delete(v->prov);
    v->prov = NULL;
    return EXIT_ERR;
}

void unit_clear(unit_view *v)
{
    cJSON_Delete(v->prov);
    v->prov = NULL;
}

/* Value of a user.provenance.* xattr as a string; false when absent or unreadable. */
static bool get_xattr(const char *path, const char *name, char *buf, size_t size)
{
    ssize_t n = getxattr(path, name, buf, size - 1);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

const char *str_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The approval label from .provenance: a string, or an object with "state". */
const char *approval_label(const cJSON *prov)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(prov, "approval");
    if (cJSON_IsString(a))
        return a->valuestring;
    return cJSON_IsObject(a) ? str_member(a, "state") : NULL;
}

/* ---------------------------------------------------------------- lineage */

static void print_link(const cJSON *l, const char *indent)
{
    const char *p = str_member(l, "path");
    const char *id = str_member(l, "id");
    const cJSON *score = cJSON_GetObjectItemCaseSensitive(l, "score");
    const char *verdict = str_member(l, "verdict");
    char name[PATH_MAX + 32];
    if (p)
        snprintf(name, sizeof name, "%s", p);
    else
        snprintf(name, sizeof name, "(id %s, no path)", id ? id : "?");
    printf("%s%-40s", indent, name);
    if (cJSON_IsNumber(score))
        printf("  score %.4f", score->valuedouble);
    if (verdict)
        printf("  %s", verdict);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "is_parent")))
        printf("  (this is its parent)");
    putchar('\n');
}

static cJSON *dup_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cJSON *c = v ? cJSON_Duplicate(v, true) : NULL;
    return c ? c : cJSON_CreateNull();
}

/* A copy of an array member, or an empty array. */
static cJSON *array_member(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsArray(v) ? cJSON_Duplicate(v, true) : cJSON_CreateArray();
}

int provctl_lineage(int argc, char **argv)
{
    const char *json = NULL, *pos[1];
    opt_spec specs[] = {{"--json", false, &json}};
    int n = parse_opts("lineage", argc, argv, specs, 1, pos, 1);
    if (n != 1) {
        if (n == 0)
            fprintf(stderr, "usage: provctl lineage PATH [--json]\n");
        return EXIT_ERR;
    }
    unit_view v;
    int rc = unit_load(pos[0], &v);
    if (rc)
        return rc;
    const cJSON *lin = cJSON_GetObjectItemCaseSensitive(v.prov, "lineage");
    const cJSON *parent = cJSON_GetObjectItemCaseSensitive(lin, "parent");
    const cJSON *parents = cJSON_GetObjectItemCaseSensitive(lin, "parents");
    const cJSON *anc = cJSON_GetObjectItemCaseSensitive(lin, "ancestors");
    const cJSON *kids = cJSON_GetObjectItemCaseSensitive(lin, "children");
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(v.prov, "policy");
    char family[PATH_MAX] = "";
    bool have_family = get_xattr(v.dir, "user.provenance.family", family, sizeof family);
    const char *store_path = str_member(v.prov, "path");
    const char *approval = approval_label(v.prov);

    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "schema", "provfs.lineage/1");
            cJSON_AddStringToObject(o, "path", pos[0]);
            cJSON_AddItemToObject(o, "store_path", dup_member(v.prov, "path"));
            cJSON_AddItemToObject(o, "id", dup_member(v.prov, "id"));
            cJSON_AddStringToObject(o, "status", v.status);
            if (have_family)
                cJSON_AddStringToObject(o, "family", family);
            else
                cJSON_AddNullToObject(o, "family");
            cJSON_AddItemToObject(o, "parent", dup_member(lin, "parent"));
            cJSON_AddItemToObject(o, "parents", array_member(lin, "parents"));
            cJSON_AddItemToObject(o, "ancestors", array_member(lin, "ancestors"));
            cJSON_AddItemToObject(o, "children", array_member(lin, "children"));
            cJSON_AddItemToObject(o, "approval", dup_member(v.prov, "approval"));
            cJSON_AddItemToObject(o, "policy", dup_member(v.prov, "policy"));
        }
        char *text = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!text) {
            fprintf(stderr, "provctl: %s: out of memory\n", pos[0]);
            unit_clear(&v);
            return EXIT_ERR;
        }
        puts(text);
        free(text);
        unit_clear(&v);
        return 0;
    }

    const char *id = str_member(v.prov, "id");
    printf("%s  %s%s%s\n", store_path ? store_path : pos[0], v.status, id ? "  id " : "",
           id ? id : "");
    if (approval || cJSON_IsObject(pol)) {
        const char *dec = str_member(pol, "decision");
        const char *reason = str_member(pol, "reason");
        printf("  approval: %s", approval ? approval : "?");
        if (dec)
            printf("   policy: %s%s%s", dec, reason ? " — " : "", reason ? reason : "");
        putchar('\n');
    }
    if (cJSON_IsObject(parent)) {
        printf("  parent:   ");
        print_link(parent, "");
    } else {
        printf("  parent:   none\n");
    }
    if (cJSON_GetArraySize(parents) >= 2) {
        /* several parents: each with the share of the model it explains */
        printf("  parents:\n");
        const cJSON *p;
        cJSON_ArrayForEach(p, parents)
        {
            const cJSON *share = cJSON_GetObjectItemCaseSensitive(p, "share");
            char indent[32];
            if (cJSON_IsNumber(share))
                snprintf(indent, sizeof indent, "    %5.1f%%  ", 100 * share->valuedouble);
            else
                snprintf(indent, sizeof indent, "    %6s  ", "?");
            print_link(p, indent);
        }
    }
    if (have_family)
        printf("  family:   %s\n", family);
    printf("ancestors (nearest first):\n");
    int count = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, anc)
    {
        char indent[16];
        snprintf(indent, sizeof indent, "  %2d. ", ++count);
        print_link(l, indent);
    }
    if (!count)
        printf("  (none)\n");
    printf("children:\n");
    count = 0;
    cJSON_ArrayForEach(l, kids)
    {
        count++;
        print_link(l, "  ");
    }
    if (!count)
        printf("  (none)\n");
    unit_clear(&v);
    return 0;
}

/* ---------------------------------------------------------------- approve / revoke */

/* Octal escapes of /proc/self/mountinfo (\040 for a space) undone in place. */
static void unescape_mount(char *s)
{
    char *o = s;
    for (char *p = s; *p;) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 4;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
}

/* The provfs mount point holding the absolute path abs (the longest match); false when none. */
static bool provfs_mount_of(const char *abs, char *out, size_t outlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[8192];
    size_t best = 0;
    while (fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "fuse.provfs ", 12) != 0)
            continue;
        char *save = NULL, *field = strtok_r(line, " ", &save);
        for (int i = 0; field && i < 4; i++)
            field = strtok_r(NULL, " ", &save);
        if (!field)
            continue;
        unescape_mount(field);
        size_t len = strlen(field);
        bool inside = strncmp(abs, field, len) == 0 && (abs[len] == '/' || abs[len] == '\0' ||
                                                        strcmp(field, "/") == 0);
        if (inside && len > best && len < outlen) {
            best = len;
            memcpy(out, field, len + 1);
        }
    }
    fclose(f);
    return best > 0;
}

/* Asks the daemon over its control socket (fs/control.h). -1 when no daemon answers there (the
 * caller falls back to the xattr), else the daemon's errno (0: done) with its message. */
static int control_request_send(const char *verb, const char *dir, const char *note, char *msg,
                                size_t msglen)
{
    char abs[PATH_MAX], mnt[PATH_MAX];
    if (!realpath(dir, abs) || !provfs_mount_of(abs, mnt, sizeof mnt))
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = control_abstract_name(mnt, sa.sun_path, sizeof sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct ucred server;
    socklen_t sl = sizeof server;
    /* Only root's daemon is asked: anybody can bind an abstract name first. */
    if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &server, &sl) != 0 || server.uid != 0) {
        close(fd);
        return -1;
    }
    size_t vl = strlen(verb) + 1, pl = strlen(abs) + 1, nl = strlen(note) + 1;
    char req[PATH_MAX + POLICY_NOTE_MAX + 32];
    memcpy(req, verb, vl);
    memcpy(req + vl, abs, pl);
    memcpy(req + vl + pl, note, nl);
    ssize_t w = write(fd, req, vl + pl + nl);
    char line[600];
    ssize_t r = w == (ssize_t)(vl + pl + nl) ? read(fd, line, sizeof line - 1) : -1;
    close(fd);
    if (r <= 0)
        return -1;
    line[r] = '\0';
    line[strcspn(line, "\n")] = '\0';
    char *rest = NULL;
    long err = strtol(line, &rest, 10);
    snprintf(msg, msglen, "%s", rest && *rest == ' ' ? rest + 1 : "");
    return (int)err;
}

static int set_control(const char *cmd, int argc, char **argv)
{
    const char *note = NULL, *pos[1];
    opt_spec specs[] = {{"--note", true, &note}};
    int n = parse_opts(cmd, argc, argv, specs, 1, pos, 1);
    if (n != 1) {
        if (n == 0)
            fprintf(stderr, "usage: provctl %s PATH [--note TEXT]\n", cmd);
        return EXIT_ERR;
    }
    const char *path = pos[0];
    char clean[POLICY_NOTE_MAX + 1], why[128];
    if (policy_note_parse(note, note ? strlen(note) : 0, clean, why, sizeof why) != 0) {
        fprintf(stderr, "provctl: %s: bad --note: %s\n", path, why);
        return EXIT_ERR;
    }
    /* Only inside a store: elsewhere a user.* xattr would be stored silently and mean nothing. */
    unit_view v;
    int rc = unit_load(path, &v);
    if (rc)
        return rc;
    char name[64];
    snprintf(name, sizeof name, "user.provenance.%s", cmd);
    char msg[600];
    int sent = control_request_send(cmd, v.dir, clean, msg, sizeof msg);
    if (sent > 0) {
        fprintf(stderr, "provctl: %s: %s\n", path, msg);
        unit_clear(&v);
        return EXIT_ERR;
    }
    if (sent < 0 && setxattr(v.dir, name, clean, strlen(clean), 0) != 0) {
        int e = errno;
        const char *what = strcmp(cmd, "approve") == 0 ? "approve" : "revoke";
        if (e == EPERM || e == EACCES)
            fprintf(stderr, "provctl: %s: permission denied: only admins %s\n", path, what);
        else if (e == ENODATA)
            fprintf(stderr, "provctl: %s: not a model unit\n", path);
        else if (e == EBUSY || e == EAGAIN)
            fprintf(stderr,
                    "provctl: %s: no content digest yet (status %s); try again when it is ready\n",
                    path, v.status);
        else if (e == EINVAL)
            fprintf(stderr, "provctl: %s: the store refused the request (%s)\n", path, strerror(e));
        else if (e == ENOTSUP)
            fprintf(stderr, "provctl: %s: this store does not support %s yet\n", path, what);
        else
            fprintf(stderr, "provctl: %s: %s: %s\n", path, name, strerror(e));
        unit_clear(&v);
        return EXIT_ERR;
    }
    char label[64] = "";
    unit_clear(&v);
    if (get_xattr(v.dir, "user.provenance.approval", label, sizeof label))
        printf("%s: %s (approval: %s)\n", path,
               strcmp(cmd, "approve") == 0 ? "approved" : "revoked", label);
    else
        printf("%s: %s\n", path, strcmp(cmd, "approve") == 0 ? "approved" : "revoked");
    return 0;
}

int provctl_approve(int argc, char **argv)
{
    return set_control("approve", argc, argv);
}

int provctl_revoke(int argc, char **argv)
{
    return set_control("revoke", argc, argv);
}

/* ---------------------------------------------------------------- check */

int provctl_check(int argc, char **argv)
{
    const char *wait_arg = NULL, *json = NULL, *pos[1];
    opt_spec specs[] = {{"--wait", true, &wait_arg}, {"--json", false, &json}};
    int n = parse_opts("check", argc, argv, specs, 2, pos, 1);
    if (n != 1) {
        if (n == 0)
            fprintf(stderr, "usage: provctl check PATH [--wait SECONDS] [--json]\n");
        return EXIT_ERR;
    }
    long wait_s = 0;
    if (wait_arg && !parse_count(wait_arg, 86400, &wait_s)) {
        fprintf(stderr, "provctl check: --wait needs a number of seconds, not %s\n", wait_arg);
        return EXIT_ERR;
    }
    const char *path = pos[0];
    unit_view v;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int rc = unit_load(path, &v);
        if (rc)
            return rc;
        bool settling = strcmp(v.status, "pending") == 0 || strcmp(v.status, "analyzing") == 0;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!settling || now.tv_sec - start.tv_sec >= wait_s)
            break;
        unit_clear(&v);
        usleep(200000);
    }
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(v.prov, "policy");
    const char *decision = str_member(pol, "decision");
    const char *reason = str_member(pol, "reason");
    const char *rule = str_member(pol, "rule");
    char approval[64] = "";
    if (!get_xattr(v.dir, "user.provenance.approval", approval, sizeof approval)) {
        const char *label = approval_label(v.prov);
        snprintf(approval, sizeof approval, "%s", label ? label : "");
    }
    if (!decision || (strcmp(decision, "allow") != 0 && strcmp(decision, "block") != 0)) {
        fprintf(stderr, "provctl: %s/.provenance: no policy decision\n", v.dir);
        unit_clear(&v);
        return EXIT_ERR;
    }
    bool allowed = strcmp(decision, "allow") == 0 && strcmp(approval, "blocked") != 0 &&
                   strcmp(approval, "unapproved") != 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "schema", "provfs.check/1");
            cJSON_AddStringToObject(o, "path", path);
            cJSON_AddStringToObject(o, "status", v.status);
            cJSON_AddBoolToObject(o, "allowed", allowed);
            cJSON_AddStringToObject(o, "approval", approval);
            cJSON_AddItemToObject(o, "policy", dup_member(v.prov, "policy"));
        }
        char *text = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (text)
            puts(text);
        free(text);
    } else {
        printf("%s: %s", path, allowed ? "allow" : "block");
        if (rule && rule[0])
            printf(" [%s]", rule);
        printf(" (status %s, approval %s)\n", v.status, approval[0] ? approval : "?");
        if (reason && reason[0])
            printf("  %s\n", reason);
    }
    unit_clear(&v);
    return allowed ? 0 : EXIT_REFUSED;
}

/* ---------------------------------------------------------------- log */

typedef struct event_cols {
    const char *time; /* column name holding the time, NULL when none */
    bool time_is_ns;
    bool uid, pid, path, model_id, kind, decision, rule, detail;
    bool count, last_ns; /* schema 4: aggregated policy refusals */
    bool any;            /* the table exists */
} event_cols;

/* The columns of table events (older schemas lack some); 0, or -1. No events table: all false. */
static int table_columns(db_conn *db, event_cols *c)
{
    memset(c, 0, sizeof *c);
    bool pg = db_kind_of(db) == DB_PG;
    db_stmt *stmt = db_prepare(db, pg ? "SELECT 0, column_name FROM information_schema.columns"
                                        " WHERE table_schema = current_schema()"
                                        " AND table_name = 'events'"
                                      : "PRAGMA table_info(events)");
    if (!stmt)
        return -1;
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        const char *name = db_col_text(stmt, 1);
        if (!name)
            continue;
        if (strcmp(name, "time_ns") == 0)
            c->time = "time_ns", c->time_is_ns = true;
        else if (strcmp(name, "time") == 0 && !c->time)
            c->time = "time";
        else if (strcmp(name, "uid") == 0)
            c->uid = true;
        else if (strcmp(name, "pid") == 0)
            c->pid = true;
        else if (strcmp(name, "path") == 0)
            c->path = true;
        else if (strcmp(name, "model_id") == 0)
            c->model_id = true;
        else if (strcmp(name, "kind") == 0)
            c->kind = true;
        else if (strcmp(name, "decision") == 0)
            c->decision = true;
        else if (strcmp(name, "rule") == 0)
            c->rule = true;
        else if (strcmp(name, "detail") == 0)
            c->detail = true;
        else if (strcmp(name, "count") == 0)
            c->count = true;
        else if (strcmp(name, "last_ns") == 0)
            c->last_ns = true;
        c->any = true;
    }
    db_finalize(stmt);
    return rc == DB_DONE ? 0 : -1;
}

/* ISO 8601 UTC (milliseconds) of a time column value. */
static void format_time(db_stmt *stmt, int col, bool is_ns, char *out, size_t outlen)
{
    const char *text = db_col_text(stmt, col);
    if (!text) {
        snprintf(out, outlen, "-");
        return;
    }
    char *end = NULL;
    int64_t v = strtoll(text, &end, 10);
    if (!*text || *end) { /* a time written as text by an old schema */
        snprintf(out, outlen, "%s", text);
        return;
    }
    if (v < 0 || (!is_ns && v > INT64_MAX / 1000000000)) {
        snprintf(out, outlen, "%" PRId64, v); /* not a time we can show */
        return;
    }
    int64_t ns = is_ns ? v : v * 1000000000;
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    char base[32] = "?";
    if (gmtime_r(&secs, &tm))
        strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03dZ", base, (int)((ns % 1000000000) / 1000000));
}

static const char *col_text(db_stmt *stmt, int col)
{
    return db_col_text(stmt, col);
}

static void json_text_or_null(cJSON *o, const char *key, const char *text)
{
    if (text)
        cJSON_AddStringToObject(o, key, text);
    else
        cJSON_AddNullToObject(o, key);
}

int provctl_log(int argc, char **argv)
{
    const char *db_path = NULL, *json = NULL, *limit_arg = NULL, *kind = NULL, *pos[1];
    opt_spec specs[] = {{"--db", true, &db_path},
                        {"--json", false, &json},
                        {"--limit", true, &limit_arg},
                        {"--kind", true, &kind}};
    int n = parse_opts("log", argc, argv, specs, 4, pos, 0);
    if (n < 0)
        return EXIT_ERR;
    if (!db_path) {
        fprintf(stderr, "usage: provctl log --db FILE [--json] [--limit N] [--kind K]\n");
        return EXIT_ERR;
    }
    long limit = -1;
    if (limit_arg && (!parse_count(limit_arg, LONG_MAX, &limit) || limit == 0)) {
        fprintf(stderr, "provctl log: --limit needs a positive number, not %s\n", limit_arg);
        return EXIT_ERR;
    }
    struct stat sb;
    if (!db_target_is_pg(db_path)) { /* a SQLite file: it must exist, never be created */
        if (stat(db_path, &sb) != 0) {
            fprintf(stderr, "provctl: %s: %s\n", db_path, strerror(errno));
            return EXIT_ERR;
        }
        if (!S_ISREG(sb.st_mode)) {
            fprintf(stderr, "provctl: %s: not a database file\n", db_path);
            return EXIT_ERR;
        }
        if (access(db_path, R_OK) != 0) {
            fprintf(stderr, "provctl: %s: %s\n", db_path, strerror(errno));
            return EXIT_ERR;
        }
    }
    db_conn *db = NULL;
    int ret = EXIT_ERR;
    db_stmt *stmt = NULL;
    char err[256];
    if (db_open(db_path, DB_READONLY, &db, err, sizeof err) != 0) {
        fprintf(stderr, "provctl: %s: cannot open: %s\n", db_path, err);
        goto out;
    }
    event_cols c;
    if (table_columns(db, &c) != 0) {
        fprintf(stderr, "provctl: %s: not a provfs database: %s\n", db_path, db_errmsg(db));
        goto out;
    }
    if (!c.any) {
        fprintf(stderr,
                "provctl: %s: no events table yet (not a provfs lineage database, or one "
                "from before the audit log)\n",
                db_path);
        goto out;
    }
    if (kind && !c.kind) {
        fprintf(stderr, "provctl: %s: the events table has no kind column\n", db_path);
        goto out;
    }
    /* Column names come from the fixed list above, never from input. */
    char time_col[32], sql[768];
    snprintf(time_col, sizeof time_col, "%s", c.time ? c.time : "NULL");
    snprintf(sql, sizeof sql,
             "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM events%s"
             " ORDER BY %s DESC, id DESC LIMIT ?1",
             time_col, c.uid ? "uid" : "NULL", c.pid ? "pid" : "NULL",
             c.path ? "path" : "NULL", c.model_id ? "model_id" : "NULL",
             c.kind ? "kind" : "NULL", c.decision ? "decision" : "NULL",
             c.rule ? "rule" : "NULL", c.detail ? "detail" : "NULL",
             c.count ? "count" : "1", c.last_ns ? "last_ns" : "NULL",
             kind ? " WHERE kind = ?2" : "", c.time ? c.time : "id");
    if (!(stmt = db_prepare(db, sql))) {
        fprintf(stderr, "provctl: %s: %s\n", db_path, db_errmsg(db));
        goto out;
    }
    db_bind_int64(stmt, 1, limit < 0 ? INT64_MAX : limit); /* no --limit: all */
    if (kind)
        db_bind_text(stmt, 2, kind);
    int rc;
    cJSON *root = json ? cJSON_CreateObject() : NULL;
    cJSON *events = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "schema", "provfs.events/1");
        cJSON_AddStringToObject(root, "db", db_path);
        events = cJSON_AddArrayToObject(root, "events");
    }
    while ((rc = db_step(stmt)) == DB_ROW) {
        char when[64];
        format_time(stmt, 0, c.time_is_ns, when, sizeof when);
        bool has_uid = !db_col_null(stmt, 1);
        bool has_pid = !db_col_null(stmt, 2);
        bool has_model = !db_col_null(stmt, 4);
        int64_t uid = db_col_int64(stmt, 1), pid = db_col_int64(stmt, 2);
        char model[24] = "";
        /* An aggregated refusal: how many, and the time of the last one. */
        int64_t count = db_col_null(stmt, 9) ? 1 : db_col_int64(stmt, 9);
        char last[64] = "";
        bool has_last = !db_col_null(stmt, 10);
        if (has_last)
            format_time(stmt, 10, true, last, sizeof last);
        if (has_model)
            snprintf(model, sizeof model, "%" PRIx64, (uint64_t)db_col_int64(stmt, 4));
        if (json) {
            cJSON *e = cJSON_CreateObject();
            if (!e)
                break;
            cJSON_AddStringToObject(e, "time", when);
            if (has_uid)
                cJSON_AddNumberToObject(e, "uid", (double)uid);
            else
                cJSON_AddNullToObject(e, "uid");
            if (has_pid)
                cJSON_AddNumberToObject(e, "pid", (double)pid);
            else
                cJSON_AddNullToObject(e, "pid");
            json_text_or_null(e, "path", col_text(stmt, 3));
            json_text_or_null(e, "model_id", has_model ? model : NULL);
            json_text_or_null(e, "kind", col_text(stmt, 5));
            json_text_or_null(e, "decision", col_text(stmt, 6));
            json_text_or_null(e, "rule", col_text(stmt, 7));
            json_text_or_null(e, "detail", col_text(stmt, 8));
            cJSON_AddNumberToObject(e, "count", (double)count);
            json_text_or_null(e, "last", has_last ? last : NULL);
            cJSON_AddItemToArray(events, e);
            continue;
        }
        const char *path = col_text(stmt, 3), *k = col_text(stmt, 5), *dec = col_text(stmt, 6);
        const char *rule = col_text(stmt, 7), *detail = col_text(stmt, 8);
        printf("%s  %-12s", when, k ? k : "-");
        if (dec || rule)
            printf("  %s %s", dec ? dec : "-", rule ? rule : "-");
        if (has_uid)
            printf("  uid=%" PRId64, uid);
        if (has_pid)
            printf(" pid=%" PRId64, pid);
        printf("  %s", path ? path : "-");
        if (has_model)
            printf("  model=%s", model);
        if (detail && detail[0])
            printf("  %s", detail);
        if (count != 1)
            printf("  (%" PRId64 " times, last %s)", count, has_last ? last : "-");
        putchar('\n');
    }
    if (rc != DB_DONE && rc != DB_ROW) {
        fprintf(stderr, "provctl: %s: %s\n", db_path, db_errmsg(db));
        cJSON_Delete(root);
        goto out;
    }
    if (json) {
        char *text = root ? cJSON_Print(root) : NULL;
        if (!text) {
            fprintf(stderr, "provctl: %s: out of memory\n", db_path);
            cJSON_Delete(root);
            goto out;
        }
        puts(text);
        free(text);
        cJSON_Delete(root);
    }
    ret = 0;
out:
    db_finalize(stmt);
    db_close(db);
    return ret;
}

/* ---------------------------------------------------------------- store copy */

/* provctl store copy --from DB --to DB: every row of one lineage database into an empty one
 * (a SQLite file into PostgreSQL, or back), with a row-count check (store_copy). */
int provctl_store(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "copy") != 0) {
        fprintf(stderr, "usage: provctl store copy --from DB --to DB\n");
        return EXIT_ERR;
    }
    const char *from = NULL, *to = NULL, *pos[1];
    opt_spec specs[] = {{"--from", true, &from}, {"--to", true, &to}};
    if (parse_opts("store copy", argc - 1, argv + 1, specs, 2, pos, 0) < 0)
        return EXIT_ERR;
    if (!from || !to) {
        fprintf(stderr, "usage: provctl store copy --from DB --to DB\n");
        return EXIT_ERR;
    }
    struct stat sb;
    if (!db_target_is_pg(from) && stat(from, &sb) != 0) { /* never create the source */
        fprintf(stderr, "provctl: %s: %s\n", from, strerror(errno));
        return EXIT_ERR;
    }
    store_handle *a = NULL, *b = NULL;
    char err[512];
    int ret = EXIT_ERR;
    store_copy_report r;
    if (store_open(from, STORE_READONLY, &a, err, sizeof err) != 0) /* the source is never written */
        fprintf(stderr, "provctl: %s: %s\n", from, err);
    else if (store_open(to, 0, &b, err, sizeof err) != 0)
        fprintf(stderr, "provctl: %s: %s\n", to, err);
    else if (store_copy(a, b, &r, err, sizeof err) != 0)
        fprintf(stderr, "provctl: store copy: %s (nothing was written)\n", err);
    else {
        printf("copied %lld rows in %zu tables; every table's count matches\n",
               (long long)r.rows, r.tables);
        ret = 0;
    }
    store_close(b);
    store_close(a);
    return ret;
}
