/* Identities of a unit's files as its analysis read them (model_paths.file_ids, migration 14):
 * one line per file, "ino size mtime_ns ctime_ns name\n", the name with every byte that is not
 * printable ASCII, a space or '%' written as %XX. NULL: not known (a row of an older version);
 * "": none recorded (a unit that failed). The gate compares a file on every open (gate.c,
 * file_changed); a change of metadata only through the mount moves the record along
 * (store_file_follow). */
#include "store_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '%';
}

/* Appends f's line to *buf (grown as needed). */
static bool put_line(char **buf, size_t *len, size_t *cap, const store_file *f)
{
    size_t need = *len + 4 * 24 + 3 * strlen(f->name) + 2;
    if (need > *cap) {
        size_t ncap = need * 2;
        char *grown = realloc(*buf, ncap);
        if (!grown)
            return false;
        *buf = grown;
        *cap = ncap;
    }
    char *p = *buf + *len;
    p += sprintf(p, "%" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 " ", f->ino, f->size,
                 f->mtime_ns, f->ctime_ns);
    for (const unsigned char *c = (const unsigned char *)f->name; *c; c++)
        p += plain(*c) ? sprintf(p, "%c", *c) : sprintf(p, "%%%02X", *c);
    *p++ = '\n';
    *p = '\0';
    *len = (size_t)(p - *buf);
    return true;
}

static char *encode(const store_file *files, size_t n)
{
    size_t len = 0, cap = 64;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!put_line(&buf, &len, &cap, &files[i])) {
            free(buf);
            return NULL;
        }
    return buf;
}

/* The line of text for name: its numbers in out, the offsets of the line in *at and *end. 0, or
 * 1 when no line names it (or a line does not read). */
static int find(const char *text, const char *name, store_file *out, size_t *at, size_t *end)
{
    size_t nlen = strlen(name);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            return 1;
        uint64_t ino, size;
        int64_t mt, ct;
        int used = 0;
        if (sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNd64 " %" SCNd64 " %n", &ino, &size, &mt,
                   &ct, &used) != 4 || used <= 0 || line + used > eol)
            return 1;
        /* compare the decoded name with name */
        const char *p = line + used;
        size_t k = 0;
        bool same = true;
        while (p < eol) {
            unsigned int c = (unsigned char)*p;
            if (c == '%') {
                if (eol - p < 3 || sscanf(p + 1, "%2X", &c) != 1)
                    return 1;
                p += 3;
            } else {
                p++;
            }
            if (k >= nlen || (unsigned char)name[k] != c)
                same = false;
            k++;
        }
        if (same && k == nlen) {
            out->ino = ino;
            out->size = size;
            out->mtime_ns = mt;
            out->ctime_ns = ct;
            *at = (size_t)(line - text);
            *end = (size_t)(eol + 1 - text);
            return 0;
        }
        line = eol + 1;
    }
    return 1;
}

static int set_text(store_handle *st, const char *path, const char *text)
{
    db_stmt *stmt = prep(st, st->wr, "UPDATE model_paths SET file_ids = ?2 WHERE path = ?1");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, path);
    db_bind_text(stmt, 2, text);
    return step_done(st, st->wr, stmt);
}

int store_ids_set(store_handle *st, const char *path, const store_file *files, size_t n)
{
    char *text = encode(files, n);
    int ret = text ? set_text(st, path, text) : -1;
    free(text);
    return ret;
}

/* The file_ids of path on db (st->rd under read_lock, or st->wr in a transaction): 0 and *out
 * (malloc'd), 1 when NULL or no row, -1 on error. */
static int ids_of(store_handle *st, db_conn *db, const char *path, char **out)
{
    *out = NULL;
    db_stmt *stmt = prep(st, db, "SELECT file_ids FROM model_paths WHERE path = ?1");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, path);
    int rc = db_step(stmt), ret = 1;
    if (rc == DB_ROW && !db_col_null(stmt, 0)) {
        *out = dup_col(stmt, 0);
        ret = *out ? 0 : -1;
    } else if (rc != DB_ROW && rc != DB_DONE) {
        store_log(db, "file ids");
        ret = -1;
    }
    done(st, stmt);
    return ret;
}

int store_file_id(store_handle *st, const char *unit_path, const char *name, store_file *out)
{
    char *text = NULL;
    pthread_mutex_lock(&st->read_lock);
    int rc = ids_of(st, st->rd, unit_path, &text);
    pthread_mutex_unlock(&st->read_lock);
    if (rc != 0)
        return rc < 0 ? -1 : 2;
    size_t at, end;
    rc = find(text, name, out, &at, &end);
    free(text);
    return rc;
}

int store_file_follow(store_handle *st, const char *unit_path, const char *name,
                      const store_file *was, int64_t mtime_ns, int64_t ctime_ns)
{
    if (tx_begin(st) != 0)
        return -1;
    char *text = NULL;
    int ret = ids_of(st, st->wr, unit_path, &text);
    store_file rec;
    size_t at, end;
    if (ret == 0 && find(text, name, &rec, &at, &end) == 0 && rec.ino == was->ino &&
        rec.size == was->size && rec.mtime_ns == was->mtime_ns && rec.ctime_ns == was->ctime_ns) {
        store_file moved = {.name = (char *)name, .ino = rec.ino, .size = rec.size,
                            .mtime_ns = mtime_ns, .ctime_ns = ctime_ns};
        size_t len = 0, cap = 64;
        char *line = malloc(cap);
        char *next = NULL;
        ret = -1;
        if (line && (line[0] = '\0', put_line(&line, &len, &cap, &moved)) &&
            (next = malloc(strlen(text) - (end - at) + len + 1))) {
            memcpy(next, text, at);
            memcpy(next + at, line, len);
            strcpy(next + at + len, text + end);
            ret = set_text(st, unit_path, next);
        }
        free(line);
        free(next);
    } else if (ret > 0) {
        ret = 0;
    }
    free(text);
    return tx_end(st, ret < 0 ? -1 : 0);
}
