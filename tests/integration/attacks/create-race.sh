#!/usr/bin/env bash
# Issue: the daemon created files as root and handed them over with fchown/fchmodat on the name.
# A user who can write to their directory in BACKING by another path raced open(O_CREAT) through
# the mount against symlink(victim) (or a set-uid FIFO) in BACKING: the victim, a root file outside
# BACKING, became the user's. Now entries are made as the caller with O_EXCL | O_NOFOLLOW.
# The race runs for RACE_SECONDS (default 20) as the user; the victim keeps owner, group and mode.
. "$(dirname "$0")/lib.sh"
command -v gcc >/dev/null || { echo "SKIP: no gcc"; exit 77; }
write_policy enforce
# This test needs BACKING reachable by the user (the attack works on BACKING directly).
chmod 755 "$T/private"
start_provfs -o allow_shared_backing

# The victim: root's, outside BACKING, reachable by the user's symlinks.
V=$T/victim
mkdir -p "$V"
echo secret >"$V/file"
chmod 600 "$V/file"
chmod 755 "$V"
victim_stat() { stat -c '%u:%g:%a' "$V/file"; }
before=$(victim_stat)

# The user's directory, writable by the user in BACKING too (BACKING traversable for this test).
mkdir "$B/u"
chown "$TU" "$B/u"

# The racer: one process creates through the mount, the other swaps symlinks and set-uid FIFOs
# in at the same name in BACKING.
cat >"$T/race.c" <<'CEOF'
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    const char *mnt = argv[1], *back = argv[2], *victim = argv[3];
    int seconds = atoi(argv[4]);
    long tries = 0, created = 0;
    pid_t child = fork();
    if (child == 0) {
        for (unsigned i = 0;; i++) {
            unlink(back);
            if (i & 1)
                symlink(victim, back);
            else
                mkfifo(back, 04777);
        }
    }
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end) {
        int fd = open(mnt, O_CREAT | O_WRONLY | O_NONBLOCK, 0666);
        tries++;
        if (fd >= 0) {
            created++;
            close(fd);
        }
        unlink(mnt);
    }
    kill(child, SIGKILL);
    printf("%ld %ld\n", tries, created);
    return 0;
}
CEOF
gcc -O2 -o "$T/race" "$T/race.c" || fail "cannot build the racer"
chmod 755 "$T/race"

note "create race against symlinks and set-uid FIFOs for ${RACE_SECONDS:-20} s"
out=$(as_user "$T/race" "$M/u/x" "$B/u/x" "$V/file" "${RACE_SECONDS:-20}")
note "tries and creates: $out"
[ "${out%% *}" -ge 1000 ] || fail "too few tries: $out"
expect_eq "victim owner:group:mode" "$(victim_stat)" "$before"
expect_eq "victim content" "$(cat "$V/file")" secret
# nothing root-owned was left behind in the user's directory
left=$(find "$B/u" -user root | head -5)
[ -z "$left" ] || fail "root-owned entries left behind: $left"

note "creates are the caller's: file, directory, FIFO, symlink; set-gid directories keep their group"
as_user sh -c "echo a >$M/u/f && mkdir $M/u/d && mkfifo $M/u/p && ln -s f $M/u/l" ||
    fail "the user cannot create in their directory"
for n in f d p l; do
    expect_eq "owner of $n" "$(stat -c %u "$B/u/$n")" "$TUID"
    expect_eq "group of $n" "$(stat -c %g "$B/u/$n")" "$TGID"
done
mkdir "$B/sg" && chgrp 0 "$B/sg" && chmod 2777 "$B/sg"
as_user sh -c "echo b >$M/sg/g" || fail "create in a set-gid dir"
expect_eq "group in a set-gid dir" "$(stat -c %g "$B/sg/g")" 0
expect_eq "owner in a set-gid dir" "$(stat -c %u "$B/sg/g")" "$TUID"
note "a user cannot create where BACKING forbids it, nor make set-gid files of others' groups"
expect_errno "Permission denied" as_user sh -c "echo c >$M/sg2" 
as_user sh -c "touch $M/u/s && chmod 2755 $M/u/s" || true
[ "$(stat -c %g "$B/u/s")" = "$TGID" ] || fail "group of s"
stop_provfs
