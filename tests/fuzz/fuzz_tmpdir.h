/* A private scratch directory for the fuzz targets that need files on disk: one per process, in
 * /dev/shm when it is there (tmpfs: no disk I/O per run), emptied before each run and removed at
 * exit. Header-only: each target is one translation unit. */
#ifndef FUZZ_TMPDIR_H
#define FUZZ_TMPDIR_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[256];

static inline void fuzz_dir_clean(void)
{
    DIR *d = opendir(fuzz_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", fuzz_dir, de->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
}

static inline void fuzz_dir_remove(void)
{
    if (!fuzz_dir[0])
        return;
    fuzz_dir_clean();
    rmdir(fuzz_dir);
    fuzz_dir[0] = '\0';
}

/* The directory (created on first use); aborts when none can be made. */
static inline const char *fuzz_dir_get(void)
{
    if (!fuzz_dir[0]) {
        struct stat sb;
        const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
                                   access("/dev/shm", W_OK) == 0
                               ? "/dev/shm"
                               : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/provfs-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_dir))
            abort();
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir;
}

/* Writes name in the directory; aborts on an I/O error (a full tmpfs is not a finding). */
static inline void fuzz_dir_write(const char *name, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir_get(), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    const char *c = data;
    while (len) {
        ssize_t w = write(fd, c, len);
        if (w <= 0)
            abort();
        c += w;
        len -= (size_t)w;
    }
    close(fd);
}

#endif
