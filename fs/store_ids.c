/* Identities of a unit's files as its analysis read them (model_paths.file_ids, migration 14):
 * one line per file, "ino size mtime_ns ctime_ns name\n", the name with every byte that is not
 * printable ASCII, a space or '%' written as %XX. NULL: not known (a row of an older version);
 * "": none recorded (a unit that failed). The gate compares a file on every open (gate.c,
 * file_changed); a change of metadata only through the mount moves the record along
 * (store_file_follow). */
#include "store_int.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool store_ctime_young(int64_t ctime_ns)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return store_ts_ns(now) - ctime_ns < 20 * 1000000LL;
}

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

/* Reads an unsigned decimal at *p (advanced past it and one space); false when none. */
static bool read_u64(const char **p, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    const char *q = *p;
    if (q >= end || *q < '0' || *q > '9')
        return false;
    while (q < end && *q >= '0' && *q <= '9') {
        unsigned d = (unsigned)(*q - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        q++;
    }
    if (q >= end || *q != ' ')
        return false;
    *p = q + 1;
    *out = v;
    return true;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The line for name (by_ino false) or for inode ino (by_ino true; its decoded name, at most
 * namelen - 1 bytes, in name_out when not NULL): its numbers in out, the offsets of the line in
 * *at and *end. 0, or 1 when no line matches (or the text does not read). One pass, no copy. */
static int find(const char *text, const char *name, bool by_ino, uint64_t ino, store_file *out,
                size_t *at, size_t *end, char *name_out, size_t namelen)
{
    size_t nlen = name ? strlen(name) : 0;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        if (!eol)
            return 1;
        const char *p = line;
        uint64_t v[4];
        for (int k = 0; k < 4; k++)
            if (!read_u64(&p, eol, &v[k]))
                return 1;
        bool same = true;
        size_t k = 0;
        if (by_ino) {
            same = v[0] == ino;
        }
        for (; p < eol && same; k++) {
            int c = (unsigned char)*p;
            if (c == '%') {
                int hi = eol - p >= 3 ? hexval(p[1]) : -1, lo = eol - p >= 3 ? hexval(p[2]) : -1;
                if (hi < 0 || lo < 0)
                    return 1;
                c = hi * 16 + lo;
                p += 3;
            } else {
                p++;
            }
            if (by_ino) {
                if (name_out && k + 1 < namelen)
                    name_out[k] = (char)c;
            } else if (k >= nlen || (unsigned char)name[k] != c) {
                same = false;
            }
        }
        if (same && (by_ino || k == nlen)) {
            if (by_ino && name_out && namelen)
                name_out[k < namelen ? k : namelen - 1] = '\0';
            out->ino = v[0];
            out->size = v[1];
            out->mtime_ns = (int64_t)v[2];
            out->ctime_ns = (int64_t)v[3];
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

int store_ids_index(store_handle *st, const char *path, const char *text)
{
    db_stmt *stmt = prep(st, st->wr, "DELETE FROM file_inodes WHERE path = ?1");
    if (!stmt)
        return -1;
    db_bind_text(stmt, 1, path);
    if (step_done(st, st->wr, stmt) != 0)
        return -1;
    if (!text || !*text)
        return 0;
    stmt = prep(st, st->wr,
                "INSERT INTO file_inodes (ino, path) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
    if (!stmt)
        return -1;
    int ret = 0;
    /* each line begins with the inode number */
    for (const char *line = text; ret == 0 && *line;) {
        const char *eol = strchr(line, '\n');
        const char *p = line;
        uint64_t ino;
        if (!eol || !read_u64(&p, eol, &ino)) {
            ret = -1; /* never written so: the text is encode()'s */
            break;
        }
        db_bind_int64(stmt, 1, (int64_t)ino);
        db_bind_text(stmt, 2, path);
        if (db_step(stmt) != DB_DONE) {
            store_log(st->wr, "file inodes");
            ret = -1;
        }
        db_reset(stmt);
        line = eol + 1;
    }
    done(st, stmt);
    return ret;
}

int store_ids_set(store_handle *st, const char *path, const store_file *files, size_t n)
{
    char *text = encode(files, n);
    int ret = text ? set_text(st, path, text) : -1;
    if (ret == 0)
        ret = store_ids_index(st, path, text);
    free(text);
    return ret;
}

int store_ids_record(store_handle *st, const char *path, const store_file *files, size_t n)
{
    if (tx_begin(st) != 0)
        return -1;
    return tx_end(st, store_ids_set(st, path, files, n));
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
    rc = find(text, name, false, 0, out, &at, &end, NULL, 0);
    free(text);
    return rc;
}

int store_file_id_ino(store_handle *st, const char *unit_path, uint64_t ino, store_file *out,
                      char *name, size_t namelen)
{
    char *text = NULL;
    pthread_mutex_lock(&st->read_lock);
    int rc = ids_of(st, st->rd, unit_path, &text);
    pthread_mutex_unlock(&st->read_lock);
    if (rc != 0)
        return rc < 0 ? -1 : 1;
    size_t at, end;
    rc = find(text, NULL, true, ino, out, &at, &end, name, namelen);
    free(text);
    return rc;
}

int store_units_of_inode(store_handle *st, uint64_t ino, char ***paths, size_t *n)
{
    *paths = NULL;
    *n = 0;
    size_t cap = 0;
    int ret = 0;
    pthread_mutex_lock(&st->read_lock);
    db_stmt *stmt = prep(st, st->rd, "SELECT path FROM file_inodes WHERE ino = ?1 LIMIT 65");
    if (!stmt) {
        pthread_mutex_unlock(&st->read_lock);
        return -1;
    }
    db_bind_int64(stmt, 1, (int64_t)ino);
    int rc;
    while ((rc = db_step(stmt)) == DB_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            char **grown = realloc(*paths, cap * sizeof *grown);
            if (!grown) {
                ret = -1;
                break;
            }
            *paths = grown;
        }
        char *p = dup_col(stmt, 0);
        if (!p) {
            ret = -1;
            break;
        }
        (*paths)[(*n)++] = p;
    }
    if (ret == 0 && rc != DB_DONE) {
        store_log(st->rd, "file inodes");
        ret = -1;
    }
    done(st, stmt);
    pthread_mutex_unlock(&st->read_lock);
    if (ret != 0) {
        store_paths_free(*paths, *n);
        *paths = NULL;
        *n = 0;
    }
    return ret;
}

void store_paths_free(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
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
    if (ret == 0 && find(text, name, false, 0, &rec, &at, &end, NULL, 0) == 0 &&
        rec.ino == was->ino &&
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
