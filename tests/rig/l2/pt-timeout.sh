# L2 side of pt-timeout: sequential 64 KiB direct reads of twice the slow drive's burst. The
# first burst's worth go at full speed; then each read waits in QEMU's throttle longer than
# satavm's pass-through timeout, and every retry again.
set -u
up() { cut -d' ' -f1 /proc/uptime; }
chunk=$(sed -n 's/.*rig.chunk=\([0-9]*\).*/\1/p' /proc/cmdline)
burst=$(sed -n 's/.*rig.burst=\([0-9]*\).*/\1/p' /proc/cmdline)
echo "@@L2 model=$(cat /sys/block/sda/device/model) chunk=$chunk burst=$burst"
t0=$(up)
if dd if=/dev/sda of=/dev/null bs="$chunk" count=$((2 * burst / chunk)) iflag=direct 2>/tmp/dd.err; then
    echo "@@L2 slow-read=succeeded ($t0 s -> $(up) s)"
else
    echo "@@L2 slow-read=failed ($t0 s -> $(up) s): $(tr '\n' ' ' </tmp/dd.err)"
fi
dmesg | grep -E 'ata1|I/O error' | tail -40 | sed 's/^/@@L2 dmesg: /'
# The throttle drains at its rate: after a pause, small reads go through at once again.
sleep 6
ok=0
i=0
while [ $i -lt 8 ]; do
    dd if=/dev/sda of=/dev/null bs=4k count=1 skip=$((3000 + i)) iflag=direct 2>/dev/null && ok=$((ok + 1))
    i=$((i + 1))
done
if [ "$ok" = 8 ]; then
    echo "@@L2 later-reads=ok ($(up) s)"
else
    echo "@@L2 later-reads=$ok of 8"
fi
