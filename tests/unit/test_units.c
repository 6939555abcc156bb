/* units.c without a mount: path splitting and the mount-relative paths of fds below BACKING,
 * including names that end like the kernel's mark of an unlinked file. */
#include "check.h"
#include "shared.h"
#include "units.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_split(void)
{
    char a[64] = "/a/b/c";
    CHECK_STR(units_split_path(a), "c");
    CHECK_STR(a, "/a/b");
    char b[64] = "/c";
    const char *base = units_split_path(b);
    CHECK_STR(base, "c");
    CHECK_STR(b, "/");
    char c[64] = "plain";
    CHECK_STR(units_split_path(c), "plain");
}

static int touch(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    return fd >= 0 ? 0 : -1;
}

static void test_fd_path(void)
{
    char tmpl[] = "/tmp/provfs-units.XXXXXX";
    char *top = mkdtemp(tmpl);
    CHECK(top != NULL);
    if (!top)
        return;
    char backing[PATH_MAX], sub[PATH_MAX];
    snprintf(backing, sizeof backing, "%s/b", top);
    snprintf(sub, sizeof sub, "%s/b/dir", top);
    CHECK(mkdir(backing, 0700) == 0 && mkdir(sub, 0700) == 0);
    int root = open(backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int topfd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(root >= 0 && topfd >= 0);
    units u = {.backing = backing, .backing_len = strlen(backing), .root_fd = root};
    char out[PATH_MAX];

    CHECK_INT(units_fd_path(&u, root, out, sizeof out), 0);
    CHECK_STR(out, "/");
    CHECK(touch(root, "dir/f") == 0);
    int f = openat(root, "dir/f", O_PATH | O_CLOEXEC);
    CHECK_INT(units_fd_path(&u, f, out, sizeof out), 0);
    CHECK_STR(out, "/dir/f");
    char small[4];
    CHECK_INT(units_fd_path(&u, f, small, sizeof small), -1); /* does not fit */

    /* Outside BACKING, and a sibling whose name starts like BACKING's. */
    CHECK(touch(topfd, "outside") == 0 && mkdir(strcat(strcpy(out, top), "/bb"), 0700) == 0);
    int o = openat(topfd, "outside", O_PATH | O_CLOEXEC);
    int bb = openat(topfd, "bb", O_PATH | O_CLOEXEC);
    CHECK_INT(units_fd_path(&u, o, out, sizeof out), -1);
    CHECK_INT(units_fd_path(&u, bb, out, sizeof out), -1);

    /* Unlinked: no path. A live file whose name ends in " (deleted)" keeps its path. */
    CHECK(unlinkat(root, "dir/f", 0) == 0);
    CHECK_INT(units_fd_path(&u, f, out, sizeof out), -1);
    CHECK(touch(root, "dir/g (deleted)") == 0);
    int g = openat(root, "dir/g (deleted)", O_PATH | O_CLOEXEC);
    CHECK_INT(units_fd_path(&u, g, out, sizeof out), 0);
    CHECK_STR(out, "/dir/g (deleted)");
    /* An unlinked file is not the live file that a user named as its deleted mark. */
    CHECK(touch(root, "dir/h") == 0);
    int h = openat(root, "dir/h", O_PATH | O_CLOEXEC);
    CHECK(touch(root, "dir/h (deleted)") == 0 && unlinkat(root, "dir/h", 0) == 0);
    CHECK_INT(units_fd_path(&u, h, out, sizeof out), -1);
    close(h);

    /* Nothing attached: the bookkeeping records nothing and knows nothing. */
    CHECK(!units_known(&u, "/dir"));
    units_removed(&u, "/dir", true);
    units_mark_dir(&u, (pf_caller){0}, "/dir", false);

    close(g);
    close(o);
    close(bb);
    close(f);
    close(root);
    close(topfd);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    CHECK(system(cmd) == 0);
}

/* Rows of table pending another daemon (or anybody with the database) wrote: only plain
 * mount-relative paths reach the queue. */
static void test_pending_paths(void)
{
    static const char *const good[] = {"/", "/m", "/bases/tiny", "/a/b.c/..d", "/.hidden/x",
                                       "/a/.provfsx", "/a/.provfs/x"};
    static const char *const bad[] = {"", "m", "//m", "/m/", "/./m", "/a/./b", "/a/..",
                                      "/../etc", "/a/../../b", "/a//b", "/.provfs",
                                      "/.provfs/lineage.db", NULL};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_MSG(shared_plain_path(good[i]), "%s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(!shared_plain_path(bad[i]), "%s", bad[i] ? bad[i] : "(null)");
}

int main(void)
{
    test_split();
    test_fd_path();
    test_pending_paths();
    return check_report("test_units");
}
