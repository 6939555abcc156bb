#!/usr/bin/env bash
# Demo mount: installs missing packages, builds, mounts BACKING (default ./store-data) at
# MOUNTPOINT (default ./models) with the embedded defaults, puts a base model and a fine-tune of it
# in, and prints how to look at the lineage and how to unmount.
#   tools/run.sh [BACKING [MOUNTPOINT]]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
backing=$(realpath -m "${1:-store-data}")
mnt=$(realpath -m "${2:-models}")

need=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libssl-dev libsqlite3-dev
      libcjson-dev attr sqlite3 libseccomp-dev)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Models are parsed in worker processes that run as this system user (else as nobody).
if [ "$(id -u)" -eq 0 ] && ! id provfs-analyzer >/dev/null 2>&1; then
    echo "== creating the system user provfs-analyzer (analysis workers run as it)"
    useradd --system --no-create-home --shell /usr/sbin/nologin provfs-analyzer
fi

echo "== build (build/)"
[ -d build ] || meson setup build >/dev/null
ninja -C build fs/provfs tools/mkmodel tools/provctl >/dev/null

if mountpoint -q "$mnt" 2>/dev/null; then
    echo "== $mnt is already mounted; unmounting the old mount"
    $sudo_cmd fusermount3 -u "$mnt"
fi
mkdir -p "$backing" "$mnt"
echo "== mounting $backing at $mnt"
$sudo_cmd "$root/build/fs/provfs" "$backing" "$mnt"
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { echo "provfs did not mount" >&2; exit 2; }

status() { getfattr --only-values -n user.provenance.status "$1" 2>/dev/null || true; }
wait_ready() {
    for _ in $(seq 300); do
        case "$(status "$1")" in ready | failed | incomplete) return 0 ;; esac
        sleep 0.1
    done
}

demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
if [ ! -e "$mnt/bases/tiny-llama" ]; then
    echo "== adding a base model and a fine-tune of it (mkmodel)"
    "$root/build/tools/mkmodel" create "$demo/base" --arch llama --seed 1 >/dev/null
    "$root/build/tools/mkmodel" derive "$demo/base" "$demo/ft" --kind finetune --seed 2 >/dev/null
    $sudo_cmd mkdir -p "$mnt/bases" "$mnt/finetunes"
    $sudo_cmd cp -r "$demo/base" "$mnt/bases/tiny-llama"
    wait_ready "$mnt/bases/tiny-llama"
    $sudo_cmd cp -r "$demo/ft" "$mnt/finetunes/tiny-llama-chat"
    wait_ready "$mnt/finetunes/tiny-llama-chat"
fi

cat <<EOT

provfs is mounted: $backing -> $mnt
Lineage of the fine-tune:
  getfattr -d -m user.provenance $mnt/finetunes/tiny-llama-chat
EOT
getfattr -d -m user.provenance "$mnt/finetunes/tiny-llama-chat" 2>/dev/null | sed 's/^/    /'
cat <<EOT
Full record (JSON):      cat $mnt/finetunes/tiny-llama-chat/.provenance
Store summary:           cat $mnt/.provenance
Add your own model:      cp -r MODEL_DIR $mnt/   (then getfattr as above)
Database:                sqlite3 $backing/.provfs/lineage.db 'select * from edges'
Unmount:                 ${sudo_cmd:+$sudo_cmd }fusermount3 -u $mnt
EOT
