# Two --disk options give two AHCI ports; L2 writes both at once and reads them back, and
# L1 finds each pattern in its own image. With trapped registers and the doorbells (the
# default, given explicitly): libahci's issue writes go through KVM's ioeventfds.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
truncate -s 64M a.img b.img
rig_run_l2 l2.out --memory 512 --cmdline "$(rig_l2_cmdline ahci-two-disks)" \
    --disk path=a.img,model=DISK-A --disk path=b.img,model=DISK-B --registers trap
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
# Linux 6.1: "... 32 slots 2 ports 6 Gbps 0x3 impl SATA mode"; 6.12: "2/2 ports implemented".
rig_expect l2.out 'ahci .*(32 slots 2 ports|2/2 ports implemented)' "ahci sees 2 ports"
rig_expect l2.out '^@@L2 sd[ab] model=DISK-A' "L2 sees disk A"
rig_expect l2.out '^@@L2 sd[ab] model=DISK-B' "L2 sees disk B"
for d in a b; do
    sum=$(sed -n "s/^@@L2 $d=ok \([0-9a-f]*\).*/\1/p" l2.out | tr -d '\r')
    [ -n "$sum" ] || rig_fail "L2 could not read back disk $d"
    got=$(dd if=$d.img bs=64k count=64 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] || rig_fail "$d.img holds $got, L2 wrote $sum"
    rig_ok "$d.img holds what L2 wrote"
done
rig_expect l2.out 'port 1: [1-9][0-9]* commands' "port 1 carried commands"
rig_expect l2.out 'doorbells: [1-9][0-9]* PxSACT/PxCI writes taken by KVM ioeventfds' \
    "PxSACT/PxCI writes were taken by the doorbells"
rig_expect l2.out 'vCPU exits: [0-9]+ \(MMIO [1-9][0-9]* reads,' "register reads exited to satavm (trap mode)"
echo "PASS"
