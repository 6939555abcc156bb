#!/usr/bin/env bash
# Builds a Debian package of provfs with dpkg-deb: the daemon in /usr/sbin (where mount.fuse3
# finds it for fstab's fuse.provfs type), provctl, the man pages, the reference sets in
# /usr/share/provfs/refdb, the systemd unit provfs@.service, a default policy in /etc/provfs and
# a postinst that creates the unprivileged analysis user provfs-analyzer.
#   tools/package.sh [OUTDIR]     (default: build-pkg/) -> OUTDIR/provfs_VERSION_ARCH.deb
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-$root/build-pkg}
bdir=$root/build-pkg/build
stage=$root/build-pkg/stage
mkdir -p "$out" "$root/build-pkg"
if [ ! -d "$bdir" ]; then
    meson setup "$bdir" --prefix=/usr --sbindir=sbin --buildtype=release \
        -Drefdb_dir=/usr/share/provfs/refdb -Dsystemd_unit_dir=/lib/systemd/system >/dev/null
fi
ninja -C "$bdir" fs/provfs tools/provctl >/dev/null
rm -rf "$stage"
DESTDIR=$stage meson install -C "$bdir" --no-rebuild >/dev/null
# tests and tools that are not part of the package
rm -f "$stage/usr/bin/mkmodel" "$stage/usr/bin/benchtool"
find "$stage/usr/share/man" -type f -name '*.[18]' -exec gzip -9n {} +
install -D -m 0644 dist/policy.json "$stage/etc/provfs/policy.json"
cat >"$stage/usr/share/doc/provfs/copyright" <<'COPY'
provfs: Apache-2.0; the text is in /usr/share/common-licenses/Apache-2.0.
/usr/share/provfs/refdb/cisco-mpk: reference data under Apache-2.0; see LICENSE and NOTICE there.
COPY

version=$(meson introspect "$bdir" --projectinfo | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
arch=$(dpkg --print-architecture)
mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CTL
Package: provfs
Version: $version
Architecture: $arch
Maintainer: provfs <provfs@localhost>
Installed-Size: $size
Depends: fuse3, libfuse3-3, libsqlite3-0, libcjson1, libssl3, libseccomp2, libprotobuf-c1, adduser
Recommends: libpq5
Section: admin
Priority: optional
Description: provenance-aware model store (FUSE)
 provfs is a FUSE file system mounted as a shared store for machine-learning
 models. It fingerprints every model written into it from its weights, links it
 to its closest ancestor among the stored models, records the lineage in SQLite
 (or in a PostgreSQL database several hosts share: libpq5), shows it as extended
 attributes and .provenance files, and can block models of unknown or unapproved
 lineage until an administrator approves them.
CTL
echo /etc/provfs/policy.json >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
if [ "$1" = configure ] && ! getent passwd provfs-analyzer >/dev/null; then
    adduser --system --group --no-create-home --home /nonexistent \
        --gecos "provfs model analysis" provfs-analyzer >/dev/null
fi
exit 0
POST
chmod 0755 "$stage/DEBIAN/postinst"
deb="$out/provfs_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
