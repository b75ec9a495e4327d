# L2 reboots (`reboot -f`) with satavm's ACPI tables: Linux writes the FADT's reset register,
# and satavm ends with its reboot status, 80.
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

export RUST_LOG=satavm=info
rig_run_l2 l2.out --memory 256 --cmdline "$(rig_l2_cmdline acpi-reboot)"
rc=$?
unset RUST_LOG
[ "$rc" = 80 ] || rig_fail "satavm exited with status $rc, expected 80 (rebooted)"
rig_ok "satavm exited 80 when L2 rebooted"
rig_expect l2.out '^@@L2 acpi-reboot: rebooting' "L2 ran its scenario"
rig_expect l2.out 'reboot: Restarting system' "L2 restarted"
rig_expect l2.out 'ACPI: reset register: reset' "through the ACPI reset register"
rig_expect l2.out 'satavm: the guest rebooted' "satavm says why it ended"
echo "PASS"
