# satavm with no arguments runs its built-in firmware, a bare-metal AHCI driver that checks
# the controller (bring-up, IDENTIFY, PIO, DMA, 32 slots, 32 NCQ commands at once, an IDNF
# error and its recovery, COMRESET, HBA reset) against a scratch image, and exits 0 on PASS.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
"$SATAVM" </dev/null >out 2>&1
rc=$?
rig_show out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
for check in pci hba 'port0 start' 'port0 identify' 'port0 pio' 'port0 dma' 'port0 slots-32' \
    'port0 ncq-32' 'port0 error-idnf' 'port0 error-recovery' 'port0 comreset' hba-reset; do
    rig_expect out "^PASS $check" "self-test: $check"
done
rig_expect out '^PASS port0 error-idnf: .*ERR=0x10 \(IDNF set\)' "the emulated drive reports IDNF past the end"
rig_expect out '^satavm-selftest: RESULT PASS \(12 checks\)' "self-test verdict PASS"
if grep -q '^FAIL' out; then rig_fail "a FAIL line in the report"; fi
echo "PASS"
