# L2 side of ahci-two-disks: two ports, written and read at the same time.
set -u
dmesg | grep -E 'ahci .*slots' | sed 's/^/@@L2 dmesg: /'
for d in sda sdb; do echo "@@L2 $d model=$(cat /sys/block/$d/device/model)"; done
dd if=/dev/urandom of=/tmp/a bs=64k count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=64k count=64 2>/dev/null
dd if=/tmp/a of=/dev/sda bs=64k oflag=direct 2>/dev/null &
dd if=/tmp/b of=/dev/sdb bs=64k oflag=direct 2>/dev/null &
wait
sync
echo 3 >/proc/sys/vm/drop_caches
a=$(dd if=/dev/sda bs=64k count=64 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
b=$(dd if=/dev/sdb bs=64k count=64 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$a" = "$(md5sum </tmp/a | cut -d' ' -f1)" ] && echo "@@L2 sda=ok $a"
[ "$b" = "$(md5sum </tmp/b | cut -d' ' -f1)" ] && echo "@@L2 sdb=ok $b"
grep -c ahci /proc/interrupts | sed 's/^/@@L2 ahci-interrupt-lines=/'
