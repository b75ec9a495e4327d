# L2 side of hotplug-passthrough: read sda in a loop; probe one LBA until it reads, then
# until it fails (the runtime rule), then until it reads again; wait for sda to go; wait for
# a new sd device and check its first MiB.
set -u
want=$(sed -n 's/.*rig.new_md5=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
bad=$(sed -n 's/.*rig.bad_lba=\([0-9]*\).*/\1/p' /proc/cmdline)
i=0
while [ ! -e /sys/block/sda ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { echo "@@L2 no sda"; exit 1; }
    sleep 0.1
done
(
    # From 64 MiB on: away from the probed LBA.
    while dd if=/dev/sda of=/dev/null bs=64k skip=1024 count=256 iflag=direct 2>/tmp/dd.err; do :; done
    echo "@@L2 dd-ended errors=$(head -1 /tmp/dd.err)"
) &
reader=$!
echo "@@L2 reading sda"
probe() { dd if=/dev/sda of=/dev/null bs=512 skip="$bad" count=1 iflag=direct 2>/tmp/probe.err; }
# wait_probe WANT LIMIT: probe every 0.2 s until it succeeds (WANT=ok) or fails (WANT=fail).
wait_probe() {
    _i=0
    while :; do
        if probe; then [ "$1" = ok ] && return 0; else [ "$1" = fail ] && return 0; fi
        _i=$((_i + 1))
        [ "$_i" -le "$2" ] || return 1
        sleep 0.2
    done
}
wait_probe ok 300 || { echo "@@L2 probe never ok: $(head -1 /tmp/probe.err)"; exit 1; }
echo "@@L2 probe ok"
wait_probe fail 600 || { echo "@@L2 probe never failed"; exit 1; }
echo "@@L2 probe failed: $(head -1 /tmp/probe.err)"
dmesg | grep -E "I/O error|ata1" | tail -20 | sed "s/^/@@L2 dmesg: /"
wait_probe ok 600 || { echo "@@L2 probe never recovered: $(head -1 /tmp/probe.err)"; exit 1; }
echo "@@L2 probe ok again"
echo "@@L2 ready-for-removal"
while [ -e /sys/block/sda ]; do sleep 0.01; done
echo "@@L2 sda-gone"
. /scenarios/hotplug-common.sh
wait_reader "$reader"
check_new_disk "" "$want"
