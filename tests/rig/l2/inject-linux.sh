# L2 side of inject-linux: satavm fails reads of rig.bad_sector with UNC and takes the link
# down once when rig.link_sector is read.
set -u
bad=$(sed -n 's/.*rig.bad_sector=\([0-9]*\).*/\1/p' /proc/cmdline)
link=$(sed -n 's/.*rig.link_sector=\([0-9]*\).*/\1/p' /proc/cmdline)
# (busybox dd reads through the page cache: a 4 KiB page holds the bad sector and the 7
# after it, so the neighbours are the pages before and after.)
if dd if=/dev/sda of=/dev/null bs=512 skip="$bad" count=1 iflag=direct 2>/tmp/dd.err; then
    echo "@@L2 bad-read=succeeded"
else
    echo "@@L2 bad-read=failed: $(cat /tmp/dd.err | head -1)"
fi
dd if=/dev/sda of=/dev/null bs=512 skip=$((bad - 8)) count=8 iflag=direct 2>/dev/null &&
    dd if=/dev/sda of=/dev/null bs=512 skip=$((bad + 8)) count=8 iflag=direct 2>/dev/null &&
    echo "@@L2 neighbour-read=ok"
if dd if=/dev/sda of=/dev/null bs=512 skip="$link" count=1 iflag=direct 2>/tmp/dd.err; then
    echo "@@L2 link-read=ok"
else
    echo "@@L2 link-read=failed: $(head -1 /tmp/dd.err)"
fi
dd if=/dev/urandom of=/tmp/p bs=4k count=16 2>/dev/null
dd if=/tmp/p of=/dev/sda bs=4k seek=100 oflag=direct 2>/dev/null
a=$(dd if=/dev/sda bs=4k skip=100 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$a" = "$(md5sum </tmp/p | cut -d' ' -f1)" ] && echo "@@L2 later-io=ok"
dmesg | grep -E "I/O error|ata1" | tail -40 | sed 's/^/@@L2 dmesg: /'
