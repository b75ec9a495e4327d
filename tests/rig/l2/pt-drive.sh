# L2 side of pt-drive: L2's libata drives L1's real SATA drive through satavm's pass-through.
set -u
dmesg | grep -E 'ata1\.00' | sed 's/^/@@L2 dmesg: /'
echo "@@L2 model=$(cat /sys/block/sda/device/model)"
echo "@@L2 serial=$(tail -c +5 /sys/block/sda/device/vpd_pg80 | tr -d ' \000')"
echo "@@L2 sectors=$(cat /sys/block/sda/size)"

# A 1 MiB pattern at 100 MiB, flushed: L1 reads it from /dev/sda after satavm exits.
dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null
dd if=/tmp/pattern of=/dev/sda bs=1M seek=100 oflag=direct 2>/dev/null
sync
echo "@@L2 pattern-md5=$(md5sum </tmp/pattern | cut -d' ' -f1)"
back=$(dd if=/dev/sda bs=1M skip=100 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
echo "@@L2 readback-md5=$back"

# Parallel direct I/O: several NCQ commands, hence several host SG_IO commands, at once.
j=0
while [ $j -lt 8 ]; do
    dd if=/dev/sda of=/dev/null bs=64k count=64 skip=$((j * 64)) iflag=direct 2>/dev/null &
    dd if=/dev/zero of=/dev/sda bs=64k count=32 seek=$((3200 + j * 32)) oflag=direct 2>/dev/null &
    j=$((j + 1))
done
wait
echo "@@L2 parallel=done"

# A refused command: SECURITY ERASE PREPARE (F3h) must come back aborted, never reaching the drive.
# hdparm's exit status is not enough: hdparm reads only descriptor-format sense (72h), and
# libata answers ATA PASS-THROUGH with fixed format (70h) by default, so hdparm says
# "bad/missing sense data" and carries on. The sense it prints shows the abort: ABORTED
# COMMAND (0b), error 04h (ABRT), then the status (41h, or 51h from satavm before 2026-12).
# Linux 6.1 puts the ATA registers at bytes 8-11 (70 00 0b 00 00 00 00 0a 04 41); 6.11 and
# later put them where SAT-5 puts them, in the INFORMATION field at bytes 3-6, with the
# VALID bit set (f0 00 0b 04 41).
if hdparm --security-erase NULL /dev/sda >/tmp/hdparm.out 2>&1; then
    if grep -Eq 'sb\[\]: *(70 00 0b 00 00 00 00 0a 04 [45]1|f0 00 0b 04 [45]1)' /tmp/hdparm.out; then
        echo "@@L2 security-erase=refused (ABRT in the sense data; hdparm exited 0)"
    else
        echo "@@L2 security-erase=accepted"
    fi
else
    echo "@@L2 security-erase=refused (hdparm exited $?)"
fi
sed 's/^/@@L2 hdparm: /' /tmp/hdparm.out
# The drive still answers.
hdparm -I /dev/sda 2>/dev/null | grep -E 'Model Number|Serial Number' | sed 's/^[[:space:]]*/@@L2 hdparm-I: /'
sync
dmesg | grep -E 'ata1' | tail -20 | sed 's/^/@@L2 dmesg-end: /'
