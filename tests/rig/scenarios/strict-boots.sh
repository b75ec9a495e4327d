# --strict never stops a correct driver: 20 L2 boots in a row with the doorbells on (the
# default) and --strict, each under parallel NCQ load (8 dd readers and 8 writers); every
# one must exit 0 (status 70 would be a spec check firing on libahci).
# A boot with its load and power-off takes 15 to 19 s in the rig: 20 need more than the
# default 300 s.
# rig: timeout 600
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

img=$RIG_SCRATCH/disk.img
truncate -s 64M "$img"
boots=${RIG_STRICT_BOOTS:-20}
i=1
while [ "$i" -le "$boots" ]; do
    rig_run_l2 "l2-$i.out" --cpus 2 --memory 256 --strict --doorbells on \
        --cmdline "$(rig_l2_cmdline strict-boots)" --disk "path=$img" >/dev/null
    rc=$?
    [ "$rc" = 0 ] || { rig_show "l2-$i.out"; rig_fail "boot $i: satavm exited with status $rc"; }
    tr -d '\r' <"l2-$i.out" | grep -q '^@@L2 load=done' || rig_fail "boot $i: the load did not finish"
    if tr -d '\r' <"l2-$i.out" | grep -q 'AHCI 1.3.1 section'; then
        rig_show "l2-$i.out"
        rig_fail "boot $i: a spec check warned"
    fi
    echo "boot $i: exited 0 at $(cut -d' ' -f1 /proc/uptime) s of L1 uptime"
    i=$((i + 1))
done
rig_ok "$boots boots under --strict with doorbells and parallel load exited 0"
echo "PASS"
