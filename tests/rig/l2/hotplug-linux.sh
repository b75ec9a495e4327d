# L2 side of hotplug-linux: read sda in a loop until it is pulled, report when sda goes and
# what the reads said, then wait for a new drive and check its first MiB.
set -u
want=$(sed -n 's/.*rig.new_md5=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
up() { cut -d' ' -f1 /proc/uptime; }
i=0
while [ ! -e /sys/block/sda ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { echo "@@L2 no sda"; exit 1; }
    sleep 0.1
done
(
    while dd if=/dev/sda of=/dev/null bs=64k count=256 iflag=direct 2>/tmp/dd.err; do :; done
    echo "@@L2 dd-ended errors=$(head -1 /tmp/dd.err)"
) &
reader=$!
echo "@@L2 reading sda, uptime $(up)"
while [ -e /sys/block/sda ]; do sleep 0.01; done
echo "@@L2 sda-gone uptime=$(up)"
. /scenarios/hotplug-common.sh
wait_reader "$reader"
# When libata first heard of it (its interrupt: PHY RDY / connection status changed).
dmesg | grep -m1 -E 'ata1: .*(PHY RDY|connection status|exception)' | sed 's/^/@@L2 first-ata1: /'
check_new_disk HOTPLUG-NEW "$want"
