# L2 side of smart-power: smartctl and hdparm against satavm's emulated drive, as on a drive.
# With libata.force=1.5G on the command line it only reports the link speed.
set -u
spd=$(cat /sys/class/ata_link/link1/sata_spd 2>/dev/null)
echo "@@L2 sata_spd=$spd"
dmesg | grep -E 'ata1: SATA link' | sed 's/^/@@L2 dmesg: /'
if grep -q 'libata.force=' /proc/cmdline; then
    exit 0
fi
if grep -q 'rig.readonly=1' /proc/cmdline; then
    # A read-only drive: writes fail, and libata must not count them against the link.
    n=0
    for i in 1 2 3 4 5 6 7 8 9 10; do
        dd if=/dev/zero of=/dev/sda bs=4k count=1 seek=$((i * 64)) oflag=direct 2>/dev/null ||
            n=$((n + 1))
    done
    echo "@@L2 ro-writes-failed=$n"
    mke2fs -q /dev/sda 2>/dev/null && echo "@@L2 ro-mkfs=succeeded" || echo "@@L2 ro-mkfs=failed"
    dd if=/dev/sda of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null && echo "@@L2 ro-read=ok"
    echo "@@L2 ro-queue_depth=$(cat /sys/block/sda/device/queue_depth)"
    echo "@@L2 ro-sata_spd=$(cat /sys/class/ata_link/link1/sata_spd)"
    dmesg | grep -E 'ata1|sd 0:0:0:0|critical|NCQ' | tail -n 30 | sed 's/^/@@L2 dmesg: /'
    exit 0
fi

smartctl -i /dev/sda >/tmp/i; echo "@@L2 smartctl-i rc=$?"
sed 's/^/@@L2 i: /' /tmp/i
smartctl -a /dev/sda >/tmp/a; echo "@@L2 smartctl-a rc=$?"
sed 's/^/@@L2 a: /' /tmp/a
echo "@@L2 attributes=$(grep -cE '^ *[0-9]+ [A-Za-z_]+ +0x[0-9a-f]{4}' /tmp/a)"
smartctl -x /dev/sda >/tmp/x; echo "@@L2 smartctl-x rc=$?"
sed 's/^/@@L2 x: /' /tmp/x

# A short self-test reads the image; poll until it is logged.
smartctl -t short /dev/sda >/dev/null; echo "@@L2 smartctl-t rc=$?"
i=0
while [ $i -lt 120 ]; do
    smartctl -l selftest /dev/sda >/tmp/st
    grep -q '^# 1' /tmp/st && break
    sleep 1
    i=$((i + 1))
done
sed 's/^/@@L2 st: /' /tmp/st
grep -q '^# 1 *Short offline *Completed without error' /tmp/st && echo "@@L2 selftest=ok"

echo "@@L2 power-initial=$(hdparm -C /dev/sda | sed -n 's/.*drive state is: *//p')"
hdparm -y /dev/sda >/dev/null; echo "@@L2 hdparm-y rc=$?"
echo "@@L2 power-after-y=$(hdparm -C /dev/sda | sed -n 's/.*drive state is: *//p')"
dd if=/dev/sda of=/dev/null bs=4k count=16 skip=4096 iflag=direct 2>/dev/null
echo "@@L2 power-after-read=$(hdparm -C /dev/sda | sed -n 's/.*drive state is: *//p')"
hdparm -Y /dev/sda >/dev/null; echo "@@L2 hdparm-Y rc=$?"
if dd if=/dev/sda of=/dev/null bs=4k count=64 skip=8192 iflag=direct 2>/dev/null; then
    echo "@@L2 read-after-sleep=ok"
fi
echo "@@L2 power-after-wake=$(hdparm -C /dev/sda | sed -n 's/.*drive state is: *//p')"
dmesg | grep -E 'ata1' | tail -n 12 | sed 's/^/@@L2 dmesg: /'
