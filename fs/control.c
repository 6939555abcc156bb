/* The control socket: approvals and revocations by admins who may not write the unit (the kernel
 * checks write permission for user.* xattrs before provfs sees a setxattr). See control.h. */
#include "control.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_MAX_REQUEST 8192
#define CONTROL_MAX_GROUPS 1024

struct control {
    int fds[2];        /* the abstract socket and the path socket; -1 when not bound */
    char *path;        /* the path socket's name, unlinked at stop */
    control_fn fn;     /* immutable */
    void *ctx;         /* immutable */
    pthread_t thread;
    atomic_bool stop;
};

size_t control_abstract_name(const char *mountpoint, char *out, size_t outlen)
{
    /* "\0provfs-control:MOUNTPOINT", truncated to what sun_path holds. */
    int n = snprintf(out, outlen, "%cprovfs-control:%s", '\0', mountpoint);
    if (n < 0)
        return 0;
    return (size_t)n < outlen ? (size_t)n : outlen - 1;
}

static int listen_on(const char *name, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (len > sizeof sa.sun_path)
        len = sizeof sa.sun_path;
    memcpy(sa.sun_path, name, len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0 ||
        listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one request: "VERB\0PATH\0NOTE\0" within a second; 0 or -1. */
static int read_request(int fd, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            return -1;
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        *len += (size_t)n;
        size_t nuls = 0;
        for (size_t i = 0; i < *len; i++)
            nuls += buf[i] == '\0';
        if (nuls >= 3)
            return 0;
    }
    return -1;
}

static void serve(control *c, int conn)
{
    char buf[CONTROL_MAX_REQUEST];
    char reply[512];
    size_t len;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    gid_t groups[CONTROL_MAX_GROUPS];
    socklen_t gl = sizeof groups;
    int n_groups = 0;
    int err = 0;
    snprintf(reply, sizeof reply, "ok");
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
        err = EPERM;
        snprintf(reply, sizeof reply, "peer credentials unavailable");
    } else if (read_request(conn, buf, sizeof buf, &len) != 0) {
        err = EINVAL;
        snprintf(reply, sizeof reply, "malformed request");
    } else {
        /* The peer's supplementary groups as they were at connect (no /proc race). */
        if (getsockopt(conn, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0)
            n_groups = (int)(gl / sizeof *groups);
        const char *verb = buf;
        const char *path = verb + strlen(verb) + 1;
        const char *note = path + strlen(path) + 1;
        control_request rq = {.verb = verb, .path = path, .note = note, .uid = cred.uid,
                              .gid = cred.gid, .pid = cred.pid, .groups = groups,
                              .n_groups = n_groups};
        err = c->fn(c->ctx, &rq, reply, sizeof reply);
    }
    char out[600];
    int m = snprintf(out, sizeof out, "%d %s\n", err, reply);
    if (m > 0 && write(conn, out, (size_t)m) < 0) {
        /* the client went away: nothing to tell */
    }
}

static void *control_main(void *arg)
{
    control *c = arg;
    while (!atomic_load(&c->stop)) {
        struct pollfd p[2] = {{.fd = c->fds[0], .events = POLLIN}, {.fd = c->fds[1], .events = POLLIN}};
        if (poll(p, 2, 200) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & POLLIN))
                continue;
            int conn = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (conn < 0)
                continue;
            serve(c, conn);
            close(conn);
        }
    }
    return NULL;
}

control *control_start(const char *mountpoint, const char *sock_path, control_fn fn, void *ctx)
{
    control *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fn = fn;
    c->ctx = ctx;
    char name[sizeof ((struct sockaddr_un *)0)->sun_path];
    size_t len = control_abstract_name(mountpoint, name, sizeof name);
    c->fds[0] = len ? listen_on(name, len) : -1;
    c->fds[1] = -1;
    if (sock_path) {
        unlink(sock_path);
        mode_t old = umask(077);
        c->fds[1] = listen_on(sock_path, strlen(sock_path) + 1);
        umask(old);
        if (c->fds[1] >= 0) {
            chmod(sock_path, 0600);
            c->path = strdup(sock_path);
        }
    }
    if ((c->fds[0] < 0 && c->fds[1] < 0) ||
        pthread_create(&c->thread, NULL, control_main, c) != 0) {
        for (int i = 0; i < 2; i++)
            if (c->fds[i] >= 0)
                close(c->fds[i]);
        if (c->path)
            unlink(c->path);
        free(c->path);
        free(c);
        return NULL;
    }
    return c;
}

void control_stop(control *c)
{
    if (!c)
        return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    for (int i = 0; i < 2; i++)
        if (c->fds[i] >= 0)
            close(c->fds[i]);
    if (c->path)
        unlink(c->path);
    free(c->path);
    free(c);
}
