# A read the real drive fails (QEMU blkdebug: EIO on one sector of the rig's second drive)
# reaches L2 as an I/O error on that sector; L2 keeps running, later I/O succeeds, and
# satavm keeps running and exits 0.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
[ -n "${RIG_FAULTY_SECTOR:-}" ] || rig_fail "RIG_FAULTY_SECTOR is not set in L1"
dd if="$RIG_FAULTY_DRIVE" of=/dev/null bs=512 skip="$RIG_FAULTY_SECTOR" count=1 iflag=direct 2>/dev/null &&
    rig_fail "L1 itself read the faulty sector: the rig's fault injection is not working"
rig_ok "the faulty sector fails in L1 too"

rig_run_l2 l2.out --memory 512 --cmdline "$(rig_l2_cmdline pt-error) rig.bad_sector=$RIG_FAULTY_SECTOR" \
    --disk "passthrough=$RIG_FAULTY_SG"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm kept running and exited 0"
# The SCSI INQUIRY model field holds 16 characters: "SATAVM-RIG-FAULTY" reads "SATAVM-RIG-FAULT".
rig_expect l2.out '^@@L2 model=SATAVM-RIG-FAULT ' "L2 sees the faulty drive"
rig_expect l2.out '^@@L2 bad-read=failed' "the read of the bad sector failed in L2"
rig_expect l2.out "I/O error, dev sda, sector $RIG_FAULTY_SECTOR" "L2's kernel reports the I/O error at that sector"
rig_expect l2.out '^@@L2 later-io=ok' "later writes and reads succeed"
rig_expect l2.out '^@@L2 neighbour-read=ok' "the sectors before it still read"
rig_expect l2.out '^@@L2 END pt-error rc=0' "L2 script succeeded"
echo "PASS"
