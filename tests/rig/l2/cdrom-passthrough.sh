# L2 side of cdrom-passthrough: Linux's sr driver on a host CD/DVD drive passed through.
set -u
dmesg | grep -E 'ata1|sr 0|sr0' | sed 's/^/@@L2 dmesg: /'
i=0
while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/sr0 ] || { echo "@@L2 no /dev/sr0"; exit 1; }
echo "@@L2 model=$(cat /sys/block/sr0/device/model | sed 's/ *$//')"
echo "@@L2 blkid: $(blkid /dev/sr0)"
echo "@@L2 raw-md5=$(dd if=/dev/sr0 bs=2048 count=1024 2>/dev/null | md5sum | cut -d' ' -f1)"
. /scenarios/sr-read.sh
sr_read_figure "pass-through (the host drive, through L1)" || echo "@@L2 timed read failed"
mkdir -p /mnt
mount -t iso9660 -o ro /dev/sr0 /mnt || { echo "@@L2 mount failed"; exit 1; }
(cd /mnt && find . -type f | sort | xargs md5sum) | sed "s/^/@@L2 disc1 md5 /"
umount /mnt
# A WRITE(10) of one block straight to the drive's sg node: satavm must refuse it (CHECK
# CONDITION, ILLEGAL REQUEST) without sending it to the host drive (L1 checks the trace).
sg=$(ls /sys/block/sr0/device/scsi_generic)
dd if=/dev/zero of=/tmp/blk bs=2048 count=1 2>/dev/null
sg_raw -s 2048 -i /tmp/blk "/dev/$sg" 2a 00 00 00 00 10 00 00 01 00 >/tmp/sgraw.out 2>&1
echo "@@L2 write10 rc=$? $(tr '\n' ' ' </tmp/sgraw.out)"
