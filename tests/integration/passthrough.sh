#!/usr/bin/env bash
# Ordinary file operations through the mount behave like the backing directory; the provenance
# surface refuses what fs/README.md says it refuses.
. "$(dirname "$0")/lib.sh"
start_provfs

cd "$M"
note "create, write, read, append"
echo hello >a.txt
expect_eq "read back" "$(cat a.txt)" hello
expect_eq "backing copy" "$(cat "$B/a.txt")" hello
echo world >>a.txt
expect_eq "O_APPEND" "$(cat a.txt | tr '\n' ' ')" "hello world "
python3 - <<'EOF'
import os
fd = os.open("app.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(3):
    os.pwrite(fd, b"x" * 10, 0)  # O_APPEND wins over the offset
os.close(fd)
assert os.path.getsize("app.bin") == 30
EOF

note "large write and read (1 MiB requests), sparse file"
head -c 8388608 /dev/urandom >"$T/big"
cp "$T/big" big.bin
cmp "$T/big" big.bin || fail "big file differs"
cmp "$T/big" "$B/big.bin" || fail "backing big file differs"
truncate -s 1G sparse.bin
expect_eq "sparse size" "$(stat -c %s sparse.bin)" 1073741824
[ "$(stat -c %b "$B/sparse.bin")" -lt 100 ] || fail "sparse file was filled"
printf 'end' | dd of=sparse.bin bs=1 seek=1073741820 conv=notrunc status=none
expect_eq "sparse tail" "$(tail -c 4 sparse.bin | od -An -c | tr -d ' ')" 'end\0'

note "directories, rename, rename over, hard link, symlink"
mkdir -p d/e
mv a.txt d/b.txt
[ ! -e a.txt ] && [ -f d/b.txt ] || fail "rename"
echo other >c.txt
mv c.txt d/b.txt
expect_eq "rename over" "$(cat d/b.txt)" other
ln d/b.txt hard
expect_eq "link count" "$(stat -c %h d/b.txt)" 2
expect_eq "hard link inode" "$(stat -c %i hard)" "$(stat -c %i d/b.txt)"
ln -s d/b.txt sym
expect_eq "symlink target" "$(readlink sym)" d/b.txt
expect_eq "through symlink" "$(cat sym)" other
ln -s ../../x d/e/rel
expect_eq "dangling symlink" "$(readlink d/e/rel)" ../../x
mv d dd
expect_eq "dir rename keeps content" "$(cat dd/b.txt)" other
rmdir dd/e 2>/dev/null && fail "rmdir of a non-empty dir succeeded"
rm dd/e/rel
rmdir dd/e

note "truncate, chmod, chown, utimens"
truncate -s 3 hard
expect_eq "truncate" "$(cat dd/b.txt)" oth
chmod 640 hard
expect_eq "chmod" "$(stat -c %a dd/b.txt)" 640
chown 1234:5678 hard
expect_eq "chown" "$(stat -c %u:%g "$B/hard")" 1234:5678
touch -d '2001-02-03 04:05:06' hard
expect_eq "utimens" "$(stat -c %Y hard)" "$(date -d '2001-02-03 04:05:06' +%s)"

note "creation as the caller"
mkdir shared && chmod 1777 shared
su nobody -s /bin/sh -c "echo mine >$M/shared/n.txt && mkdir $M/shared/nd && ln -s n.txt $M/shared/nl" \
    || fail "nobody cannot create in a 1777 dir"
expect_eq "file owner" "$(stat -c %U "$B/shared/n.txt")" nobody
expect_eq "dir owner" "$(stat -c %U "$B/shared/nd")" nobody
expect_eq "symlink owner" "$(stat -c %U "$B/shared/nl")" nobody
su nobody -s /bin/sh -c "echo x >$M/hard" 2>/dev/null && fail "nobody wrote a 0640 root file"
su nobody -s /bin/sh -c "rm -f $M/big.bin" 2>/dev/null && fail "nobody deleted in a 0755 dir"

note "ordinary xattrs pass through; unknown ones give ENODATA"
setfattr -n user.color -v blue big.bin
expect_eq "user xattr" "$(getfattr --only-values -n user.color big.bin)" blue
expect_eq "backing xattr" "$(getfattr --only-values -n user.color "$B/big.bin")" blue
getfattr -d big.bin | has_match user.color || fail "listxattr misses user.color"
setfattr -x user.color big.bin
expect_errno "No such attribute" getfattr -n user.color big.bin
expect_errno "No such attribute" getfattr -n security.capability big.bin

note ".provfs is invisible and cannot be created"
[ -d "$B/.provfs" ] || fail "no BACKING/.provfs"
expect_errno "No such file" ls -d "$M/.provfs"
expect_errno "No such file" cat "$M/.provfs/lineage.db"
ls -a "$M" | has_match -x .provfs && fail ".provfs listed"
expect_errno "Permission denied" mkdir "$M/.provfs"
expect_errno "Permission denied" mv "$M/big.bin" "$M/.provfs"
mkdir sub && mkdir sub/.provfs && rmdir sub/.provfs # only the root one is reserved

note ".provenance: readable JSON, hidden, read-only"
python3 -m json.tool "$M/.provenance" >/dev/null || fail "/.provenance is not JSON"
python3 -m json.tool "$M/sub/.provenance" >/dev/null || fail "sub/.provenance is not JSON"
expect_eq "mode" "$(stat -c %a "$M/.provenance")" 444
ls -a "$M" | has_match -x .provenance && fail ".provenance listed"
expect_errno "Permission denied" sh -c "echo x >$M/.provenance"
expect_errno "Permission denied" sh -c "echo x >>$M/sub/.provenance"
expect_errno "Permission denied" rm "$M/.provenance"
expect_errno "Permission denied" mv "$M/.provenance" "$M/p"
expect_errno "Permission denied" mv "$M/big.bin" "$M/sub/.provenance"
expect_errno "Permission denied" truncate -s 0 "$M/.provenance"
# The name exists, so the kernel itself answers link/mkdir on it with EEXIST.
expect_errno "File exists" ln "$M/big.bin" "$M/sub/.provenance"
expect_errno "File exists" mkdir "$M/sub/.provenance"
expect_errno "Operation not permitted" setfattr -n user.provenance.status -v ready big.bin
expect_errno "Operation not permitted" setfattr -x user.provenance.status big.bin

note "copy tools"
mkdir "$T/tree" && (cd "$T/tree" && mkdir -p a/b && echo 1 >a/f && echo 2 >a/b/g && ln -s f a/l)
cp -a "$T/tree" "$M/cpa"
rsync -a "$T/tree/" "$M/rs/"
tar -C "$T" -cf - tree | tar -C "$M" -xf -
for d in cpa rs tree; do
    diff -r "$T/tree" "$M/$d" >/dev/null || fail "$d differs"
done
rm -rf "$M/cpa" "$M/rs" "$M/tree"
[ -z "$(ls "$B" | grep -E '^(cpa|rs|tree)$')" ] || fail "rm -rf left files"

note "statfs, fsync"
df "$M" >/dev/null || fail "statfs"
python3 -c "import os; fd=os.open('$M/big.bin', os.O_RDWR); os.fsync(fd); os.fdatasync(fd); os.close(fd)"

cd /
stop_provfs
echo "PASS passthrough"
