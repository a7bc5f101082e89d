#!/bin/sh
# Builds the Debian bookworm root of the converge test: debootstrap, then the packages the roles
# install, with daemons kept from starting (policy-rc.d), so the cached root is reused as is.
# Usage: build_root.sh TARGET "pkg1 pkg2 ..." DEB_CACHE
#   TARGET must not exist (built in TARGET.part, renamed when complete); DEB_CACHE keeps the
#   downloaded .deb files, so a rebuild (a changed package list or script) downloads nothing again.
set -eu
target="$1"
packages="$2"
debs="$3"
mirror="${ATELIER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
part="$target.part"

# Whatever is mounted under the half-built root (debootstrap's own /proc and /sys, our /proc)
# is unmounted before anything there is removed: rm -rf must never reach the host's trees.
unmount_under() {
    awk -v p="$1" '$2 == p || index($2, p "/") == 1 { print $2 }' /proc/self/mounts \
        | sort -r | while read -r mnt; do umount "$mnt" || umount -l "$mnt"; done
    if awk -v p="$1" '$2 == p || index($2, p "/") == 1 { found = 1 } END { exit !found }' \
        /proc/self/mounts; then
        echo "build_root.sh: mounts remain under $1, not removing it" >&2
        exit 1
    fi
}
cleanup() {
    unmount_under "$part"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$(dirname "$target")" "$debs"
unmount_under "$part"
rm -rf "$part"
debootstrap --variant=minbase --cache-dir="$debs" \
    --include=python3,python3-apt,ca-certificates bookworm "$part" "$mirror"
unmount_under "$part"
printf '#!/bin/sh\nexit 101\n' > "$part/usr/sbin/policy-rc.d"
chmod 0755 "$part/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$part/etc/resolv.conf"
find "$debs" -maxdepth 1 -name '*.deb' -exec cp -n {} "$part/var/cache/apt/archives/" \;
mount -t proc proc "$part/proc"
chroot "$part" apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive chroot "$part" \
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
find "$part/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -n {} "$debs/" \;
chroot "$part" apt-get clean
unmount_under "$part"
mv "$part" "$target"
