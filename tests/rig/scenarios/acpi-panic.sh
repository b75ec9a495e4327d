# L2's kernel panics (sysrq c); its pvpanic driver (pvpanic-mmio, bound to the DSDT's
# QEMU0001 device) reports it on the pvpanic port, and satavm ends with status 81.
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

rig_run_l2 l2.out --memory 256 --cmdline "$(rig_l2_cmdline acpi-panic)"
rc=$?
rig_expect l2.out '^@@L2 pvpanic=bound' "L2's pvpanic driver bound to the ACPI device"
rig_expect l2.out 'Kernel panic' "L2 panicked"
[ "$rc" = 81 ] || rig_fail "satavm exited with status $rc, expected 81 (guest panicked)"
rig_ok "satavm exited 81 when L2 panicked"
rig_expect l2.out 'satavm: the guest kernel panicked' "satavm says why it ended"
echo "PASS"
