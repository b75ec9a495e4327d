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
# The reader must end by itself (no hang): its dd fails once sda is gone.
i=0
while kill -0 "$reader" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 600 ] || { echo "@@L2 reader hung"; exit 1; }
    sleep 0.1
done
wait "$reader"
# When libata first heard of it (its interrupt: PHY RDY / connection status changed).
dmesg | grep -m1 -E 'ata1: .*(PHY RDY|connection status|exception)' | sed 's/^/@@L2 first-ata1: /'
echo "@@L2 waiting-for-new"
new=
i=0
while [ -z "$new" ]; do
    for d in /sys/block/sd*; do
        [ -e "$d/device/model" ] || continue
        case "$(cat "$d/device/model")" in HOTPLUG-NEW*) new=${d##*/} ;; esac
    done
    i=$((i + 1))
    [ "$i" -le 600 ] || { echo "@@L2 no new disk"; ls /sys/block; exit 1; }
    [ -n "$new" ] || sleep 0.1
done
echo "@@L2 new-disk=$new model=$(cat /sys/block/$new/device/model) uptime=$(up)"
got=$(dd if=/dev/$new bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
if [ "$got" = "$want" ]; then
    echo "@@L2 new-read=ok $got"
else
    echo "@@L2 new-read=bad got $got want $want"
fi
dmesg | grep -E 'ata[12]|sd[a-z]|I/O error' | tail -60 | sed 's/^/@@L2 dmesg: /'
[ "$got" = "$want" ]
