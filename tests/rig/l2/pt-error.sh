# L2 side of pt-error: the drive fails reads of one sector (QEMU blkdebug in L0).
set -u
bad=$(sed -n 's/.*rig.bad_sector=\([0-9]*\).*/\1/p' /proc/cmdline)
echo "@@L2 model=$(cat /sys/block/sda/device/model) bad-sector=$bad"
if dd if=/dev/sda of=/dev/null bs=512 skip="$bad" count=1 iflag=direct 2>/tmp/dd.err; then
    echo "@@L2 bad-read=succeeded"
else
    echo "@@L2 bad-read=failed: $(cat /tmp/dd.err)"
fi
dmesg | grep -E "I/O error|ata1.*(failed command|status|error:|Emask)" | tail -12 | sed 's/^/@@L2 dmesg: /'
# Later I/O elsewhere works: write, read back.
dd if=/dev/urandom of=/tmp/p bs=4k count=16 2>/dev/null
dd if=/tmp/p of=/dev/sda bs=4k seek=100 oflag=direct 2>/dev/null
a=$(dd if=/dev/sda bs=4k skip=100 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$a" = "$(md5sum </tmp/p | cut -d' ' -f1)" ] && echo "@@L2 later-io=ok"
dd if=/dev/sda of=/dev/null bs=512 skip=$((bad - 8)) count=8 iflag=direct 2>/dev/null && echo "@@L2 neighbour-read=ok"
