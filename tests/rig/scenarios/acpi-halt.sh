# L2 halts (`halt -f`): Linux stops every CPU with interrupts off; satavm sees every vCPU
# halted that way two looks in a row (a second apart) and ends with its halt status, 82. Then
# the same with `poweroff -f` under acpi=off, where Linux cannot power off and halts instead.
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

rig_run_l2 l2.out --cpus 2 --memory 256 --cmdline "$(rig_l2_cmdline acpi-halt)"
rc=$?
rig_expect l2.out '^@@L2 acpi-halt: halt -f' "L2 ran its scenario"
rig_expect l2.out 'reboot: System halted' "L2 halted"
[ "$rc" = 82 ] || rig_fail "satavm exited with status $rc, expected 82 (guest halted)"
rig_ok "satavm exited 82 when L2 halted"
rig_expect l2.out 'satavm: the guest halted' "satavm says why it ended"

rig_run_l2 off.out --cpus 2 --memory 256 --cmdline "$(rig_l2_cmdline acpi-halt) acpi=off"
rc=$?
rig_expect off.out '^@@L2 acpi-halt: poweroff -f' "acpi=off: L2 ran its scenario"
[ "$rc" = 82 ] || rig_fail "acpi=off: satavm exited with status $rc, expected 82 (guest halted)"
rig_ok "acpi=off: satavm exited 82 when L2's poweroff halted it"
echo "PASS"
