# L2 side of the stall probe: 4 MiB written, flushed and read back on the emulated disk.
dev=$(ls /dev/sd? | head -n1)
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
dd if=/tmp/pattern of="$dev" bs=1M oflag=direct conv=fsync 2>/dev/null || exit 1
want=$(md5sum </tmp/pattern)
got=$(dd if="$dev" bs=1M count=4 iflag=direct 2>/dev/null | md5sum)
[ "$want" = "$got" ] || exit 1
