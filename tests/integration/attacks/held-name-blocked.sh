#!/usr/bin/env bash
# A blocked model's weights read through a name of their file that no unit holds. The daemon
# holds an inode by one name, its O_PATH fd's; when the --inode-fds budget closed that fd, the
# inode is reopened by file handle and comes back by whichever alias the kernel finds first: a
# user who floods the mount with new files chooses it. The user makes a file under a neutral name
# in the future unit's directory, hard-links it out while it holds no model bytes (no unit, so
# the link is allowed), renames it within its directory to the weights' name, writes the
# weights: the unit is analysed and blocked. After a flood the daemon holds the inode by the
# link, which is in no unit. The units whose analysis read an inode decide every open of it,
# whatever name the daemon holds (fs/README.md, "Policy enforcement"): both names stay refused.
. "$(dirname "$0")/lib.sh"
write_policy enforce true
start_provfs
mkdir -m 1777 "$M/up" "$M/lk" "$M/many"
"$MKMODEL" create "$T/src" --arch llama --seed 171 >/dev/null

note "a neutral file in the future unit's directory, linked out while it holds no model bytes, renamed to the weights' name, the weights written, the config added: a blocked unit"
linked_unit "$M/up/b" "$M/lk/notes" "$T/src"
refused "$M/up/b/model.safetensors"
refused "$M/lk/notes"

note "the user creates more new files than the daemon's fd budget"
flood "$M/many"
held=$(ls -l "/proc/$PROVFS_PID/fd" 2>/dev/null | grep -E "/up/b/model.safetensors|/lk/notes" | sed 's/.*-> //' | sort -u | tr '\n' ' ' || true) 
note "the daemon holds the inode by: ${held:-(no fd open)}"
out=$(read_as_user "$M/up/b/model.safetensors" "$T/src/model.safetensors")
held=$(ls -l "/proc/$PROVFS_PID/fd" 2>/dev/null | grep -E "/up/b/model.safetensors|/lk/notes" | sed 's/.*-> //' | sort -u | tr '\n' ' ' || true)
note "the unit's name: $out; approval: $(xattr "$M/up/b" approval); the daemon held the inode by: $held"
expect_eq "a read of the blocked weights by the unit's name" "$out" refused
refused "$M/lk/notes"
stop_provfs
