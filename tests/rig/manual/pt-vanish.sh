# The pass-through drive vanishes from the host while L2 uses it (L1 deletes the SCSI device,
# as a hot-unplug would): satavm reports it, L2's reads fail with I/O errors instead of
# hanging, L2 keeps running and reboots, satavm exits 0. Deletes the rig's faulty drive.
# Not in the default test list: it passed twice, but once the deletion itself blocked in L1's
# kernel (SCSI device removal with SG_IO descriptors open), which no watchdog can interrupt.
# Run it by hand: RIG_SCENARIO_DIR=tests/rig/manual scripts/rig run pt-vanish
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
dev=${RIG_FAULTY_DRIVE#/dev/}
[ -e "/sys/block/$dev/device/delete" ] || rig_fail "no $RIG_FAULTY_DRIVE to unplug"

fifo=$RIG_SCRATCH/stdin
mkfifo "$fifo"
exec 8<>"$fifo"
"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "$(rig_l2_cmdline pt-vanish)" --disk "passthrough=$RIG_FAULTY_SG,timeout=10" \
    <"$fifo" >l2.out 2>&1 &
pid=$!
if ! rig_wait_for l2.out '^@@L2 waiting-for-vanish' 240 "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "L2 never started its I/O"
fi
# In the background: if L1's kernel blocks the removal, fail instead of hanging with it.
(echo 1 >"/sys/block/$dev/device/delete") &
del=$!
i=0
while kill -0 "$del" 2>/dev/null && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 "$del" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    rig_fail "deleting $RIG_FAULTY_DRIVE blocked in L1's kernel for 60 s"
fi
rig_ok "deleted $RIG_FAULTY_DRIVE from L1 while L2 was using it"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 1200 ]; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    rig_show l2.out
    rig_fail "satavm did not finish within 120 s of the unplug"
fi
wait "$pid"
rc=$?
exec 8>&-
rig_show l2.out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm kept running and exited 0 on L2's reboot"
rig_expect l2.out '^@@L2 io-before=ok' "I/O worked before the unplug"
rig_expect l2.out 'the drive is gone; every command now fails with ABRT' "satavm said the drive vanished"
rig_expect l2.out '^@@L2 io-after-vanish=failed' "L2's reads failed after the unplug (no hang)"
rig_expect l2.out '^@@L2 still-running' "L2 kept running"
echo "PASS"
