# L2 side of pt-vanish: I/O on a pass-through drive that disappears from the host.
set -u
dd if=/dev/sda of=/dev/null bs=4k count=64 iflag=direct 2>/dev/null && echo "@@L2 io-before=ok"
echo "@@L2 waiting-for-vanish"
# The host unplugs the drive's controller now; keep reading until the reads fail (at most ~60 s).
i=0
while [ $i -lt 120 ]; do
    if ! dd if=/dev/sda of=/dev/null bs=4k count=1 skip=$((i * 8)) iflag=direct 2>/dev/null; then
        echo "@@L2 io-after-vanish=failed"
        break
    fi
    i=$((i + 1))
    sleep 0.5
done
dmesg | grep -E 'ata1(\.00)?: |I/O error' | tail -12 | sed 's/^/@@L2 dmesg: /'
echo "@@L2 still-running"
