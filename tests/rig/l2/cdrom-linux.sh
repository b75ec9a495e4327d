# L2 side of cdrom-linux: Linux's sr driver on satavm's ATAPI CD/DVD drive.
set -u
dmesg | grep -E 'ata1|sr 0|sr0|cdrom' | sed 's/^/@@L2 dmesg: /'
i=0
while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/sr0 ] || { echo "@@L2 no /dev/sr0"; exit 1; }
echo "@@L2 model=$(cat /sys/block/sr0/device/model | sed 's/ *$//')"
echo "@@L2 blkid: $(blkid /dev/sr0)"
mkdir -p /mnt
# md5 of every file on the mounted disc, as "@@L2 discN md5 SUM ./PATH".
sums() {
    mount -t iso9660 -o ro /dev/sr0 /mnt || { echo "@@L2 mount failed"; return 1; }
    (cd /mnt && find . -type f | sort | xargs md5sum) | sed "s/^/@@L2 disc$1 md5 /"
    umount /mnt
}
sums 1 || exit 1
. /scenarios/sr-read.sh
sr_read_figure "emulated (the ISO on L1's tmpfs)" || echo "@@L2 timed read failed"
# Without this, opening a drive whose tray is open closes it (cdrom.c's autoclose).
echo 0 >/proc/sys/dev/cdrom/autoclose
eject /dev/sr0 || { echo "@@L2 eject failed"; exit 1; }
if dd if=/dev/sr0 of=/dev/null bs=2048 count=1 2>/tmp/err; then
    echo "@@L2 ejected: still readable"
else
    echo "@@L2 ejected: no medium ($(cat /tmp/err | head -1))"
fi
eject -t /dev/sr0 || { echo "@@L2 close tray failed"; exit 1; }
echo "@@L2 loaded: $(blkid /dev/sr0)"
echo 3 >/proc/sys/vm/drop_caches
echo "@@L2 swap-please"
# The host swaps the disc: the next open sees the unit attention.
i=0
while [ $i -lt 300 ]; do
    b=$(blkid /dev/sr0 2>/dev/null)
    case "$b" in *SATAVM_DISC2*) break ;; esac
    sleep 0.2
    i=$((i + 1))
done
echo "@@L2 swapped: $(blkid /dev/sr0)"
sums 2 || exit 1
