# L2 side of ahci-linux: Linux's ahci driver on satavm's controller with an emulated drive.
# Reports what libata logged, the drive's identity, a filesystem round trip, a raw pattern
# for L1 to find in the image, a parallel workload and throughput figures.
set -u
dmesg | grep -E 'ahci|ata1' | sed 's/^/@@L2 dmesg: /'
echo "@@L2 model=$(cat /sys/block/sda/device/model)"
# VPD page 80h (unit serial number): 4-byte header, then the serial libata copies from IDENTIFY.
echo "@@L2 serial=$(tail -c +5 /sys/block/sda/device/vpd_pg80 | tr -d ' \000')"
echo "@@L2 queue_depth=$(cat /sys/block/sda/device/queue_depth)"

# A filesystem on the first 64 MiB: files with checksums, verified after a remount.
mke2fs -q -b 1024 /dev/sda 65536 || { echo "@@L2 mke2fs failed"; exit 1; }
mkdir -p /mnt
mount -t ext4 /dev/sda /mnt || { echo "@@L2 mount failed"; exit 1; }
i=0
while [ $i -lt 24 ]; do
    dd if=/dev/urandom of=/mnt/f$i bs=1k count=$((i * 37 + 5)) 2>/dev/null
    i=$((i + 1))
done
(cd /mnt && md5sum f* >/tmp/sums)
umount /mnt
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 /dev/sda /mnt || { echo "@@L2 remount failed"; exit 1; }
if (cd /mnt && md5sum -c /tmp/sums >/tmp/check 2>&1); then
    echo "@@L2 fs-verify=ok files=$(wc -l </tmp/sums)"
else
    echo "@@L2 fs-verify=FAILED"; cat /tmp/check
fi
umount /mnt

# A raw 1 MiB pattern at 100 MiB, flushed: L1 looks for it in the image after satavm exits.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null
dd if=/tmp/pattern of=/dev/sda bs=1M seek=100 oflag=direct 2>/dev/null
sync
echo "@@L2 pattern-md5=$(md5sum </tmp/pattern | cut -d' ' -f1)"

# Parallel readers and writers with direct I/O: the block layer queues them as NCQ commands.
j=0
while [ $j -lt 8 ]; do
    dd if=/dev/zero of=/dev/sda bs=4k count=256 seek=$((40960 + j * 1024)) oflag=direct 2>/dev/null &
    dd if=/dev/sda of=/dev/null bs=4k count=256 skip=$((j * 1024)) iflag=direct 2>/dev/null &
    j=$((j + 1))
done
wait
echo "@@L2 parallel=done"

# Throughput figures (the rig runs under software emulation: for ratios, not absolutes).
if command -v fio >/dev/null; then
    for job in "seq-read --rw=read --bs=1M --iodepth=4" "seq-write --rw=write --bs=1M --iodepth=4" \
        "rand-read-qd1 --rw=randread --bs=4k --iodepth=1" \
        "rand-read-qd32 --rw=randread --bs=4k --iodepth=32" \
        "rand-write-qd32 --rw=randwrite --bs=4k --iodepth=32"; do
        set -- $job
        name=$1
        shift
        fio --name="$name" --filename=/dev/sda --direct=1 --ioengine=libaio --offset=128M --size=64M \
            --runtime=4 --time_based "$@" --minimal 2>/dev/null |
            awk -F';' -v n="$name" '{ printf "@@L2 fio %s read_iops=%s read_kBps=%s write_iops=%s write_kBps=%s\n", n, $8, $7, $49, $48 }'
    done
fi
sync
