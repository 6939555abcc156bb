/* File modes of the store: store_protect_dir (BACKING/.provfs 0700, its files 0600, symlinks never
 * followed) and store_open (the database, -wal and -shm 0600, also when they existed with other
 * modes, and when created under umask 0 as provfs runs). */
#include "check.h"
#include "store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[64];

static const char *at(const char *name)
{
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, 512, "%s/%s", base, name);
    return p;
}

static int mode_of(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0 ? (int)(sb.st_mode & 07777) : -1;
}

static void touch(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK_MSG(fd >= 0, "create %s", path);
    if (fd >= 0) {
        CHECK(fchmod(fd, mode) == 0);
        close(fd);
    }
}

#define CHECK_MODE(path, want)                                                                   \
    CHECK_MSG(mode_of(path) == (want), "%s: mode %o, want %o", (path), mode_of(path), (want))

static void test_protect_dir(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", at("backing/.provfs"));
    CHECK(mkdir(at("backing"), 0755) == 0);
    CHECK(mkdir(dir, 0777) == 0);
    CHECK(chmod(dir, 0777) == 0);
    touch(at("backing/.provfs/lineage.db"), 0644);
    touch(at("backing/.provfs/lineage.db-wal"), 0666);
    touch(at("backing/.provfs/lineage.db-shm"), 0644);
    touch(at("backing/.provfs/policy.json"), 0644);
    touch(at("backing/.provfs/policy.json.tmp.AbCdEf"), 04755);
    CHECK(mkdir(at("backing/.provfs/old"), 0755) == 0);
    touch(at("outside"), 0644);
    CHECK(symlink(at("outside"), at("backing/.provfs/link")) == 0);
    bool root = geteuid() == 0;
    if (root)
        CHECK(chown(at("backing/.provfs/policy.json"), 12345, 12345) == 0);
    char err[512];
    CHECK_MSG(store_protect_dir(dir, err, sizeof err) == 0, "%s", err);
    CHECK_MODE(dir, 0700);
    CHECK_MODE(at("backing/.provfs/lineage.db"), 0600);
    CHECK_MODE(at("backing/.provfs/lineage.db-wal"), 0600);
    CHECK_MODE(at("backing/.provfs/lineage.db-shm"), 0600);
    CHECK_MODE(at("backing/.provfs/policy.json"), 0600);
    CHECK_MODE(at("backing/.provfs/policy.json.tmp.AbCdEf"), 0600);
    CHECK_MODE(at("backing/.provfs/old"), 0700);
    CHECK_MODE(at("outside"), 0644); /* the symlink was not followed */
    if (root) {
        struct stat sb;
        CHECK(stat(at("backing/.provfs/policy.json"), &sb) == 0 && sb.st_uid == 0 &&
              sb.st_gid == 0);
    }
    /* Twice is fine. */
    CHECK_MSG(store_protect_dir(dir, err, sizeof err) == 0, "%s", err);
    /* .provfs itself a symlink: refused, its target untouched. */
    CHECK(mkdir(at("elsewhere"), 0755) == 0);
    CHECK(symlink(at("elsewhere"), at("linked")) == 0);
    CHECK(store_protect_dir(at("linked"), err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "symbolic link"), "%s", err);
    CHECK_MODE(at("elsewhere"), 0755);
    CHECK(store_protect_dir(at("missing"), err, sizeof err) != 0);
}

static void test_db_modes(void)
{
    char err[256];
    store_handle *st = NULL;
    /* A new database under umask 0 (as provfs runs). */
    mode_t old = umask(0);
    char db[512];
    snprintf(db, sizeof db, "%s", at("new.db"));
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK(store_event(st, 0, 1, "/x", 0, "analyzed", NULL) == 0);
    CHECK_MODE(db, 0600);
    CHECK_MODE(at("new.db-wal"), 0600);
    CHECK_MODE(at("new.db-shm"), 0600);
    store_close(st);
    umask(old);
    /* An existing database, -wal and -shm with loose modes, while another connection keeps the
     * WAL files in place. */
    snprintf(db, sizeof db, "%s", at("old.db"));
    sqlite3 *other = NULL;
    CHECK(sqlite3_open(db, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK(chmod(db, 0644) == 0 && chmod(at("old.db-wal"), 0666) == 0 &&
          chmod(at("old.db-shm"), 0644) == 0);
    CHECK_MSG(store_open(db, 0, &st, err, sizeof err) == 0, "%s", err);
    CHECK_MODE(db, 0600);
    CHECK_MODE(at("old.db-wal"), 0600);
    CHECK_MODE(at("old.db-shm"), 0600);
    store_close(st);
    sqlite3_close(other);
    /* Read-only opens change nothing. */
    CHECK(chmod(db, 0640) == 0);
    CHECK_MSG(store_open(db, STORE_READONLY, &st, err, sizeof err) == 0, "%s", err);
    store_close(st);
    CHECK_MODE(db, 0640);
    /* A symlink in the database's place refuses the open and leaves its target alone. */
    touch(at("target.db"), 0644);
    CHECK(symlink(at("target.db"), at("sym.db")) == 0);
    st = NULL;
    CHECK(store_open(at("sym.db"), 0, &st, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "symbolic link"), "%s", err);
    CHECK_MODE(at("target.db"), 0644);
    /* So does a symlinked -wal. */
    CHECK(symlink(at("target.db"), at("w.db-wal")) == 0);
    CHECK(store_open(at("w.db"), 0, &st, err, sizeof err) != 0);
    CHECK_MODE(at("target.db"), 0644);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/provfs-test-modes.XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    test_protect_dir();
    test_db_modes();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", base);
    return check_report("test_modes");
}
