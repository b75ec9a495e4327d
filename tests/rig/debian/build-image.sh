#!/usr/bin/env bash
# tests/rig/debian/build-image.sh OUT_DIR KERNEL_PACKAGE: a small installed Debian (bookworm)
# on a partitioned disk image, built once and cached: OUT_DIR/debian.img (MBR, one ext4 root
# partition from 1 MiB), OUT_DIR/debian.uuid (the root filesystem's UUID), OUT_DIR/debian.key
# (what it was built from; the image is rebuilt when that changes).
#
# The installation: systemd, udev, initramfs-tools, KERNEL_PACKAGE (the rig's kernel), util-linux,
# e2fsprogs, hdparm, smartmontools; fstab by UUID; root logs in on ttyS0 without a password
# (agetty --autologin). Built with mmdebstrap from the archive apt uses here (needs root).
set -euo pipefail
out=$1
kpkg=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
packages="systemd,systemd-sysv,udev,initramfs-tools,$kpkg,util-linux,e2fsprogs,hdparm,smartmontools,kmod,login,passwd"
# A fixed UUID: the scenario passes root=UUID=... without reading the image first.
uuid=5a7a0000-0019-4d65-8000-000000000019
size_mib=1024
key=$(printf '%s\n' "$packages" "$uuid" "$size_mib" | cat - "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$out/debian.img" ] && [ "$(cat "$out/debian.key" 2>/dev/null)" = "$key" ]; then
    exit 0
fi
command -v mmdebstrap >/dev/null || apt-get install -y mmdebstrap >&2
command -v sfdisk >/dev/null || apt-get install -y fdisk >&2
mkdir -p "$out"
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debian: building the installed system (mmdebstrap, about a minute)" >&2
mmdebstrap --quiet --variant=apt --include="$packages" \
    --customize-hook='echo satavm-debian >"$1/etc/hostname"' \
    --customize-hook="echo 'UUID=$uuid / ext4 errors=remount-ro 0 1' >\"\$1/etc/fstab\"" \
    --customize-hook='mkdir -p "$1/etc/systemd/system/serial-getty@ttyS0.service.d"' \
    --customize-hook="cp '$here/autologin.conf' \"\$1/etc/systemd/system/serial-getty@ttyS0.service.d/\"" \
    --customize-hook='chroot "$1" passwd -d root' \
    bookworm "$work/root"
echo "debian: writing the disk image" >&2
truncate -s $(((size_mib - 1) << 20)) "$work/root.ext4"
mke2fs -q -t ext4 -U "$uuid" -L debian-root -d "$work/root" "$work/root.ext4"
truncate -s $((size_mib << 20)) "$work/debian.img"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$work/debian.img"
dd if="$work/root.ext4" of="$work/debian.img" bs=1M seek=1 conv=notrunc,sparse status=none
mv "$work/debian.img" "$out/debian.img"
echo "$uuid" >"$out/debian.uuid"
echo "$key" >"$out/debian.key"
