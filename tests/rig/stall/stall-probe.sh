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
# An L2 boot here takes about 11 s; one still running after L2_LIMIT seconds hung. With one
# vCPU in L1 that is QEMU's stall (all of L1 stops and the harness sees it); with RIG_SMP=2
# L1 goes on, so the probe reports the hung L2 itself: satavm's counters (SIGUSR1) and the end
# of L2's console, then fails.
L2_LIMIT=120
fifo=$RIG_SCRATCH/.probe-stdin
rm -f "$fifo"
mkfifo "$fifo"
exec 8<>"$fifo"
i=1
while [ "$i" -le "$STALL_L2_BOOTS" ]; do
    out=l2-$i.out
    "$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --cpus 2 --memory 256 \
        --cmdline "$(rig_l2_cmdline stall-probe)" --disk "path=$img" <"$fifo" >"$out" 2>&1 &
    pid=$!
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$L2_LIMIT" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "probe: L2 boot $i still running after $L2_LIMIT s: satavm's counters, then L2's console"
        kill -USR1 "$pid"
        sleep 2
        kill -KILL "$pid"
        wait "$pid"
        tail -n 80 "$out"
        rig_fail "L2 boot $i hung (L1 still running)"
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 80 "$out"
        rig_fail "L2 boot $i: satavm exited with status $rc"
    fi
    if ! tr -d '\r' <"$out" | grep -q '^@@L2 END stall-probe rc=0'; then
        tail -n 80 "$out"
        rig_fail "L2 boot $i did not write and read its disk"
    fi
    echo "probe: L2 boot $i done at $(cut -d' ' -f1 /proc/uptime) s of L1 uptime"
    i=$((i + 1))
done
echo "PASS"
