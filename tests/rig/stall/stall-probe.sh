# The stall probe (scripts/rig stalls): one long L1 boot that boots L2 STALL_L2_BOOTS times,
# each L2 writing and reading back 4 MiB on an emulated disk, with the fault drives in L1
# (the machine on which QEMU 7.2's TCG vCPU stalled after 8 to 11 L2 boots). Each boot that
# ends prints "probe: L2 boot N done"; a stall shows as the boot that never ended.
# rig: fault-drives
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
STALL_L2_BOOTS=12
img=$RIG_SCRATCH/probe.img
truncate -s 64M "$img"
i=1
while [ "$i" -le "$STALL_L2_BOOTS" ]; do
    rig_run_l2 "l2-$i.out" --cpus 2 --memory 256 --cmdline "$(rig_l2_cmdline stall-probe)" \
        --disk "path=$img" >/dev/null
    rc=$?
    [ "$rc" = 0 ] || rig_fail "L2 boot $i: satavm exited with status $rc"
    rig_expect "l2-$i.out" '^@@L2 END stall-probe rc=0' "L2 boot $i wrote and read its disk" >/dev/null
    echo "probe: L2 boot $i done at $(cut -d' ' -f1 /proc/uptime) s of L1 uptime"
    i=$((i + 1))
done
echo "PASS"
