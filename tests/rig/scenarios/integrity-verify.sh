# Data integrity under concurrency: L2 writes and reads two disks at once with O_DIRECT and many
# requests in flight (NCQ), mixes reads and writes, reads everything back and compares
# (tests/rig/l2/integrity-verify.sh); zero mismatches. L1 then checks each region of both
# images against the checksums L2 verified, so the data is on the images, not just in L2.
# With --registers mapped; ahci-two-disks covers trapped registers (the default) with doorbells.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
reg=${RIG_INTEGRITY_REGION_MB:-32}
regions=${RIG_INTEGRITY_REGIONS:-4}
truncate -s $((reg * regions))M a.img b.img
rig_run_l2 l2.out --memory 512 \
    --cmdline "$(rig_l2_cmdline integrity-verify) rig.region_mb=$reg rig.regions=$regions" \
    --disk path=a.img,model=INTEGRITY-A --disk path=b.img,model=INTEGRITY-B --registers mapped
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_expect l2.out '^@@L2 sd[ab] model=INTEGRITY-A' "L2 sees disk A"
rig_expect l2.out '^@@L2 sd[ab] model=INTEGRITY-B *queue_depth=(3[0-2]|[12][0-9]|[2-9])$' "NCQ on (queue depth > 1)"
rig_expect l2.out '^@@L2 integrity checked=[0-9]+ mismatches=0 ' "L2 read back every region intact"
rig_expect l2.out '^@@L2 END integrity-verify rc=0' "L2 script succeeded"
tr -d '\r' <l2.out | grep -q 'MISMATCH' && rig_fail "a region read back wrong"
# The final state of every region, as L2 verified it in phase 3, must be on the images.
# The disks probe in parallel in L2: which of sda/sdb is which image, by model.
dev_a=$(tr -d '\r' <l2.out | sed -n 's/^@@L2 \(sd[ab]\) model=INTEGRITY-A.*/\1/p' | head -n 1)
dev_b=$(tr -d '\r' <l2.out | sed -n 's/^@@L2 \(sd[ab]\) model=INTEGRITY-B.*/\1/p' | head -n 1)
for pair in "$dev_a a" "$dev_b b"; do
    set -- $pair
    r=0
    while [ "$r" -lt "$regions" ]; do
        want=$(tr -d '\r' <l2.out | sed -n "s/^@@L2 verify $1 region $r rot [0-9]* ok \([0-9a-f]*\)$/\1/p" | tail -n 1)
        [ -n "$want" ] || rig_fail "no verified checksum for $1 region $r"
        got=$(dd if=$2.img bs=1M skip=$((r * reg)) count="$reg" 2>/dev/null | md5sum | cut -d' ' -f1)
        [ "$got" = "$want" ] || rig_fail "$2.img region $r holds $got, L2 verified $want"
        r=$((r + 1))
    done
    rig_ok "$2.img holds every region L2 verified"
done
for p in 0 1; do
    rig_expect l2.out "port $p: [0-9]+ commands.*NCQ peak depth ([2-9]|[1-9][0-9]), 0 errors" \
        "port $p ran queued commands concurrently, without errors"
done
# Under load, with mapped registers: every one of libahci's register reads came
# from the read-only memslot (no MMIO read reached satavm), and the data above is intact, so
# its interrupt handler saw each completion's PxSACT/PxIS (a stale read would have completed a
# command early or timed one out).
rig_expect l2.out 'registers: mapped, [1-9][0-9]* register stores' "registers mapped into the guest"
rig_expect l2.out 'vCPU exits: [0-9]+ \(MMIO 0 reads,' "no register read exited to satavm"
tr -d '\r' <l2.out | grep -E '^@@L2 integrity|NCQ|ncq|port [01]:|registers:|vCPU exits' | sed 's/^/summary: /'
echo "PASS"
