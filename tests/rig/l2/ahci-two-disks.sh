# L2 side of ahci-two-disks: two ports, written and read at the same time. The two disks
# probe in parallel, so sda/sdb can come in either order: find each by its model.
set -u
dmesg | grep -E 'ahci .*(slots|ports implemented)' | sed 's/^/@@L2 dmesg: /'
A= B=
for d in sda sdb; do
    m=$(tr -d ' ' <"/sys/block/$d/device/model")
    echo "@@L2 $d model=$m"
    case "$m" in
    DISK-A) A=$d ;;
    DISK-B) B=$d ;;
    esac
done
[ -n "$A" ] && [ -n "$B" ] || { echo "@@L2 disks not found"; exit 1; }
dd if=/dev/urandom of=/tmp/a bs=64k count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=64k count=64 2>/dev/null
dd if=/tmp/a of="/dev/$A" bs=64k oflag=direct 2>/dev/null &
dd if=/tmp/b of="/dev/$B" bs=64k oflag=direct 2>/dev/null &
wait
sync
echo 3 >/proc/sys/vm/drop_caches
a=$(dd if="/dev/$A" bs=64k count=64 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
b=$(dd if="/dev/$B" bs=64k count=64 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$a" = "$(md5sum </tmp/a | cut -d' ' -f1)" ] && echo "@@L2 a=ok $a"
[ "$b" = "$(md5sum </tmp/b | cut -d' ' -f1)" ] && echo "@@L2 b=ok $b"
grep -c ahci /proc/interrupts | sed 's/^/@@L2 ahci-interrupt-lines=/'
