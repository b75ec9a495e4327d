# The pass-through drive vanishes from the host while L2 uses it: its whole AHCI controller is
# hot-unplugged from QEMU's monitor (device_del; L1's ACPI PCI hotplug removes the controller,
# its port and the SCSI disk), as a pulled drive or a dead HBA would. satavm reports the drive
# gone, L2's reads fail with I/O errors instead of hanging, L2 keeps running and powers off, and
# satavm exits 0.
# rig: fault-drives
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
[ -n "$RIG_VANISH_SG" ] || rig_fail "no vanishing drive in this L1 (scripts/rig adds the fault drives for scenarios marked '# rig: fault-drives')"
dev=${RIG_VANISH_DRIVE#/dev/}
[ -e "/sys/block/$dev" ] || rig_fail "no $RIG_VANISH_DRIVE to unplug"
# The controller's PCI device, e.g. /sys/devices/pci0000:00/0000:00:05.0.
pci=$(readlink -f "/sys/block/$dev" | sed -n 's|^\(/sys/devices/pci[^/]*/[^/]*\)/ata.*|\1|p')
[ -d "$pci" ] || rig_fail "no PCI controller above $RIG_VANISH_DRIVE"
echo "vanishing drive: $RIG_VANISH_DRIVE $RIG_VANISH_SG on controller ${pci##*/}"
before=$(dmesg | wc -l)

fifo=$RIG_SCRATCH/stdin
mkfifo "$fifo"
exec 8<>"$fifo"
: >l2.out
"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "$(rig_l2_cmdline pt-vanish)" --disk "passthrough=$RIG_VANISH_SG,timeout=10" \
    <"$fifo" >l2.out 2>&1 &
pid=$!
if ! rig_wait_for l2.out '^@@L2 waiting-for-vanish' 240 "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "L2 never started its I/O"
fi
# Ask the host (scripts/rig, on this line of the results port) to unplug the controller.
echo "asking the host to unplug ahci-vanish"
echo "@@RIG UNPLUG ahci-vanish"
i=0
while [ -e "$pci" ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
dmesg | tail -n +$((before + 1)) >l1-dmesg.txt
if [ -e "$pci" ]; then
    rig_show l1-dmesg.txt
    # Tasks blocked in L1's kernel, if that is why.
    for s in /proc/[0-9]*/stat; do
        p=${s%/stat}
        [ "$(cut -d' ' -f3 "$s" 2>/dev/null)" = D ] || continue
        echo "blocked: ${p#/proc/} $(cat "$p/comm")"
        cat "$p/stack" 2>/dev/null
    done
    kill -KILL "$pid" 2>/dev/null
    rig_fail "L1 still has the controller 60 s after the unplug request"
fi
rig_ok "L1 removed the controller ${pci##*/} $((i / 10)).$((i % 10)) s after the unplug request, while L2 was using the drive"
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
dmesg | tail -n +$((before + 1)) >l1-dmesg.txt
rig_show l1-dmesg.txt
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm kept running and exited 0 on L2's poweroff"
[ ! -e "$RIG_VANISH_SG" ] || rig_fail "$RIG_VANISH_SG is still there"
rig_ok "$RIG_VANISH_SG is gone from L1"
rig_expect l2.out '^@@L2 io-before=ok' "I/O worked before the unplug"
rig_expect l2.out 'the drive is gone; every command now fails with ABRT' "satavm said the drive vanished"
rig_expect l2.out '^@@L2 io-after-vanish=failed' "L2's reads failed after the unplug (no hang)"
rig_expect l2.out '^@@L2 still-running' "L2 kept running"
rig_expect l2.out '^@@L2 END pt-vanish rc=0' "L2's script ended"
echo "PASS"
