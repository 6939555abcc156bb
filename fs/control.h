/* The control socket for admins: `provctl approve|revoke` send "VERB\0PATH\0NOTE\0" (VERB approve
 * or revoke, PATH absolute, inside the mount) and read back one line "ERRNO MESSAGE". Peer
 * credentials decide (SO_PEERCRED, SO_PEERGROUPS): uid 0 or a member of --admin-gid, whether or
 * not they may write the unit. The daemon listens on an abstract socket named after the mount
 * point (reachable by admins whatever BACKING's modes; nothing on disk to swap) and on
 * BACKING/.provfs/control.sock (0600, root). Plain module, no FUSE; one thread serves one
 * request at a time with a one-second read limit. */
#ifndef PROVFS_CONTROL_H
#define PROVFS_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct control control;

typedef struct control_request {
    const char *verb, *path, *note;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    const gid_t *groups; /* supplementary groups of the peer at connect */
    int n_groups;
} control_request;

/* Handles one request: 0 or an errno, with a one-line message in reply. */
typedef int (*control_fn)(void *ctx, const control_request *rq, char *reply, size_t replylen);

control *control_start(const char *mountpoint, const char *sock_path, control_fn fn, void *ctx);
void control_stop(control *c);
/* The abstract socket's name for a mount point (leading NUL included); its length. */
size_t control_abstract_name(const char *mountpoint, char *out, size_t outlen);

#endif
