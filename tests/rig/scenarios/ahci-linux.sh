# Linux's libata in L2 drives satavm's AHCI controller with an emulated drive: ahci binds
# with 32 slots and NCQ, the drive shows its configured model and serial, a filesystem keeps
# its files across a remount, parallel I/O keeps several NCQ commands outstanding, and after
# satavm exits the guest's flushed data is in the image file.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

img=$RIG_SCRATCH/disk.img
truncate -s 256M "$img"
rig_run_l2 l2.out --cpus 2 --memory 512 --cmdline "$(rig_l2_cmdline ahci-linux)" \
    --disk "path=$img,model=SATAVM-EMU-MODEL,serial=EMU0042"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"

# Linux 6.1: "AHCI 0001.0301 32 slots 1 ports 6 Gbps 0x1 impl SATA mode";
# 6.12: "AHCI vers 0001.0301, 32 command slots, 6 Gbps, SATA mode".
rig_expect l2.out 'ahci .*AHCI (vers )?0001\.0301,? 32 (command )?slots,? (1 ports )?6 Gbps' \
    "ahci bound: AHCI 1.3.1, 32 slots"
rig_expect l2.out 'ahci .*flags: .*ncq' "HBA advertises NCQ"
rig_expect l2.out 'ata1\.00: .*NCQ \(depth 32\)' "libata enabled NCQ with depth 32"
rig_expect l2.out '^@@L2 model=SATAVM-EMU-MODEL' "configured model in IDENTIFY"
rig_expect l2.out '^@@L2 serial=EMU0042$' "configured serial in IDENTIFY"
rig_expect l2.out '^@@L2 fs-verify=ok files=24' "filesystem files verified after remount"
rig_expect l2.out '^@@L2 parallel=done' "parallel workload finished"
rig_expect l2.out '^@@L2 END ahci-linux rc=0' "L2 script succeeded"

depth=$(sed -n 's/.*port 0: .* NCQ peak depth \([0-9]*\),.*/\1/p' l2.out)
[ -n "$depth" ] && [ "$depth" -gt 1 ] || rig_fail "NCQ peak depth '$depth', expected more than 1"
rig_ok "NCQ peak depth $depth"

want=$(sed -n 's/^@@L2 pattern-md5=\([0-9a-f]*\).*/\1/p' l2.out | tr -d '\r')
got=$(dd if="$img" bs=1M skip=100 count=1 2>/dev/null | md5sum | cut -d' ' -f1)
[ -n "$want" ] && [ "$want" = "$got" ] || rig_fail "image holds $got at 100 MiB, L2 wrote $want"
rig_ok "L1 finds L2's flushed pattern in the image ($got)"
grep '@@L2 fio' l2.out | tr -d '\r'
echo "PASS"
