/* Unit detection, analysis triggers and the path bookkeeping of the daemon's changes
 * (fs/units.h). */
#include "units.h"
#include "shared.h"

#include "analyze.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- paths */

int units_fd_path(const units *u, int fd, char *out, size_t outlen)
{
    char proc[64], buf[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, buf, sizeof buf - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    if (strncmp(buf, u->backing, u->backing_len) != 0)
        return -1;
    const char *rel = buf + u->backing_len;
    if (*rel == '\0')
        rel = "/";
    else if (*rel != '/')
        return -1;
    /* The kernel marks the name of an unlinked dentry with this suffix, and a user may name a
     * file so too: the path stands only when it still names this very inode. */
    static const char deleted[] = " (deleted)";
    if ((size_t)n > sizeof deleted - 1 && strcmp(buf + n - (sizeof deleted - 1), deleted) == 0) {
        struct stat mine, named;
        if (fstat(fd, &mine) != 0 || fstatat(u->root_fd, rel + 1, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
            mine.st_dev != named.st_dev || mine.st_ino != named.st_ino)
            return -1;
    }
    if (snprintf(out, outlen, "%s", rel) >= (int)outlen)
        return -1;
    return 0;
}

const char *units_split_path(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return path;
    *slash = '\0';
    const char *base = slash + 1;
    if (path[0] == '\0') {
        /* "/c": the directory is the root. Keep the root's "/" by shifting base. */
        memmove(path + 2, base, strlen(base) + 1);
        path[0] = '/';
        path[1] = '\0';
        return path + 2;
    }
    return base;
}

/* ---------------------------------------------------------------- analysis triggers */

bool units_store_knows(const units *u, const char *path)
{
    store_model m;
    if (!u->st || !store_path_maybe(u->st, path) || store_model_by_path(u->st, path, &m) != 0)
        return false;
    store_model_clear(&m);
    return true;
}

bool units_known(const units *u, const char *path)
{
    return u->q && (queue_get_state(u->q, path) != QUEUE_NONE || units_store_knows(u, path));
}

static void queue_note(const units *u, const char *path, pf_caller who, bool opening)
{
    (opening ? queue_mark_open : queue_mark)(u->q, path, who.uid, who.pid);
    if (u->st && store_shared(u->st)) {
        /* recorded where every daemon sees it: if this one dies, another analyses the unit */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t due = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec +
                      (int64_t)(opening ? SHARED_DUE_OPEN_MS : SHARED_DUE_MS) * 1000000;
        store_pending_put(u->st, path, due);
    }
}

bool units_mark_dir(const units *u, pf_caller who, const char *dir, bool opening)
{
    if (!u->q)
        return false;
    const char *rel = strcmp(dir, "/") == 0 ? "." : dir + 1;
    if (analyze_unit_check(u->root_fd, rel) != 1 &&
        queue_get_state(u->q, dir) == QUEUE_NONE && !units_store_knows(u, dir))
        return false;
    queue_note(u, dir, who, opening);
    return true;
}

bool units_mark_file(const units *u, pf_caller who, const char *path, bool opening)
{
    if (!u->q)
        return false;
    if (analyze_file_unit_check(u->root_fd, path + 1) != 1 &&
        queue_get_state(u->q, path) == QUEUE_NONE && !units_store_knows(u, path))
        return false;
    queue_note(u, path, who, opening);
    return true;
}

/* The file open on fd changed: every unit whose last analysis read its inode (the store's
 * index), when the daemon cannot name the file (unlinked while open: named false) or when it has
 * more than one link (a change through one name is a change under every other). True when one
 * was marked. */
static bool units_mark_inode(const units *u, pf_caller who, int fd, bool opening, bool named)
{
    struct stat sb;
    if (!u->q || !u->st || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (named && sb.st_nlink <= 1))
        return false;
    char **paths = NULL;
    size_t n = 0;
    if (store_units_of_inode(u->st, (uint64_t)sb.st_ino, &paths, &n) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        queue_note(u, paths[i], who, opening);
    store_paths_free(paths, n);
    return n > 0;
}

bool units_mark_file_fd(const units *u, pf_caller who, int fd, bool opening)
{
    char path[PATH_MAX];
    if (units_fd_path(u, fd, path, sizeof path) != 0) {
        units_mark_inode(u, who, fd, opening, false);
        return true; /* unknown: as if marked (the release checks again) */
    }
    bool file = units_mark_file(u, who, path, opening);
    units_split_path(path);
    bool dir = units_mark_dir(u, who, path, opening);
    bool others = units_mark_inode(u, who, fd, opening, true);
    return file || dir || others;
}

/* ---------------------------------------------------------------- names that go or move */

void units_removed(const units *u, const char *path, bool is_dir)
{
    if (!u->q)
        return;
    /* A GGUF unit goes with its name (another hard link is a path of its own); a directory
     * takes everything below it along. */
    queue_forget(u->q, path, is_dir);
    if (units_store_knows(u, path))
        store_remove_path(u->st, path, is_dir);
}

void units_renamed(const units *u, pf_caller who, int newdir_fd, const char *newname, char *from,
                   char *to, unsigned int flags)
{
    if (!u->q)
        return;
    struct stat st;
    bool moved = fstatat(newdir_fd, newname, &st, AT_SYMLINK_NOFOLLOW) == 0;
    bool file_unit = moved && S_ISREG(st.st_mode) &&
                     (queue_get_state(u->q, from) != QUEUE_NONE || units_store_knows(u, from) ||
                      analyze_file_unit_check(u->root_fd, to + 1) == 1);
    if (moved && (S_ISDIR(st.st_mode) || file_unit) && !(flags & RENAME_EXCHANGE)) {
        /* A directory or a GGUF file moved: its models keep their analysis under the new name. */
        queue_rename(u->q, from, to, S_ISDIR(st.st_mode));
        store_rename(u->st, from, to);
        if (units_store_knows(u, to))
            store_event(u->st, who.uid, who.pid, to, 0, "renamed", from);
        /* A GGUF unit's one file changed its name (part of the unit's file list and digest). */
        if (file_unit)
            units_mark_file(u, who, to, false);
    } else if (moved && S_ISREG(st.st_mode) && !(flags & RENAME_EXCHANGE)) {
        /* its hash taken while written (rsync's temporary name) */
        queue_rename(u->q, from, to, false);
    } else if (moved && S_ISDIR(st.st_mode) && (flags & RENAME_EXCHANGE)) {
        /* Two directories swapped: their records swap through a name no path can have. */
        static const char tmp[] = "//exchange"; /* no path holds "//" */
        queue_rename(u->q, from, tmp, true);
        store_rename(u->st, from, tmp);
        queue_rename(u->q, to, from, true);
        store_rename(u->st, to, from);
        queue_rename(u->q, tmp, to, true);
        store_rename(u->st, tmp, to);
        units_mark_dir(u, who, from, false);
        units_mark_dir(u, who, to, false);
    } else if (flags & RENAME_EXCHANGE) {
        units_mark_dir(u, who, from, false);
        units_mark_dir(u, who, to, false);
        units_mark_file(u, who, from, false);
        units_mark_file(u, who, to, false);
    }
    /* A file moved out of one unit and into another. */
    units_split_path(from);
    units_split_path(to);
    units_mark_dir(u, who, from, false);
    if (strcmp(from, to) != 0)
        units_mark_dir(u, who, to, false);
}
