# smartctl and hdparm in L2 against an emulated drive: smartctl -a and -x exit 0 with an
# attribute table, a short self-test completes and is logged, hdparm -C/-y/-Y see the power
# states, I/O after SLEEP recovers through libata's reset; a second L2 boot with
# libata.force=1.5G brings the link up at 1.5 Gbps (PxSCTL.SPD honoured); a third with
# readonly=on: writes fail (and mkfs, whose exit status busybox does not make depend on its
# writes, runs as extra load), and libata neither turns NCQ off nor slows the link or the
# transfer mode down.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

img=$RIG_SCRATCH/disk.img
truncate -s 64M "$img"
rig_run_l2 l2.out --cpus 1 --memory 256 --cmdline "$(rig_l2_cmdline smart-power)" \
    --disk "path=$img,model=SATAVM-SMART,serial=SMART0001"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"
rig_expect l2.out '^@@L2 dmesg: .*SATA link up 6\.0 Gbps \(SStatus 133 SControl 300\)' "link up at 6.0 Gbps"
rig_expect l2.out '^@@L2 smartctl-i rc=0' "smartctl -i exit 0"
rig_expect l2.out '^@@L2 i: LU WWN Device Id: 5 564d53 ' "NAA 5 WWN in smartctl -i"
rig_expect l2.out '^@@L2 i: Firmware Version: +SV01' "firmware revision SV01"
rig_expect l2.out '^@@L2 smartctl-a rc=0' "smartctl -a exit 0"
rig_expect l2.out '^@@L2 attributes=[1-9]' "smartctl -a prints an attribute table"
rig_expect l2.out '^@@L2 a: +9 Power_On_Hours ' "power-on hours attribute"
rig_expect l2.out '^@@L2 a: +242 Total_LBAs_Read .* [1-9][0-9]*$' "host reads counted in LBAs"
rig_expect l2.out '^@@L2 smartctl-x rc=0' "smartctl -x exit 0"
rig_expect l2.out '^@@L2 x: Device Statistics \(GP Log 0x04\)' "device statistics log"
rig_expect l2.out '^@@L2 x: SATA Phy Event Counters \(GP Log 0x11\)' "phy event counters log"
rig_expect l2.out '^@@L2 selftest=ok' "short self-test completed without error and logged"
rig_expect l2.out '^@@L2 power-initial=active/idle' "hdparm -C: active/idle"
rig_expect l2.out '^@@L2 power-after-y=standby' "hdparm -y then -C: standby"
rig_expect l2.out '^@@L2 power-after-read=active/idle' "a read spins it up"
rig_expect l2.out '^@@L2 hdparm-Y rc=0' "hdparm -Y"
rig_expect l2.out '^@@L2 read-after-sleep=ok' "I/O after SLEEP recovers through libata's reset"
rig_expect l2.out '^@@L2 END smart-power rc=0' "L2 script succeeded"

rig_run_l2 l2-slow.out --cpus 1 --memory 256 \
    --cmdline "$(rig_l2_cmdline smart-power) libata.force=1.5G" --disk "path=$img"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm (libata.force=1.5G) exited with status $rc"
rig_expect l2-slow.out '^@@L2 sata_spd=1\.5 Gbps' "libata.force=1.5G: sata_spd 1.5 Gbps"
rig_expect l2-slow.out 'SATA link up 1\.5 Gbps \(SStatus 113 SControl 310\)' "link up at 1.5 Gbps, SControl 310"

rig_run_l2 l2-ro.out --cpus 1 --memory 256 \
    --cmdline "$(rig_l2_cmdline smart-power) rig.readonly=1" --disk "path=$img,readonly=on"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm (readonly=on) exited with status $rc"
rig_expect l2-ro.out '^@@L2 ro-writes-failed=10' "read-only: every write failed"
# 6.1 reports the IDNF as "I/O error", 6.12 the DATA PROTECT sense as "critical target error".
rig_expect l2-ro.out '(I/O|critical target) error, dev sda, sector [0-9]+ op 0x1:\(WRITE\)' \
    "read-only: the kernel reports failed writes"
tr -d '\r' <l2-ro.out | sed -n 's/.*\(Sense Key\|Add\. Sense\)/\1/p' | sort | uniq -c
rig_expect l2-ro.out '^@@L2 ro-read=ok' "read-only: reads still work"
rig_expect l2-ro.out '^@@L2 ro-queue_depth=32' "read-only: NCQ still on (depth 32)"
rig_expect l2-ro.out '^@@L2 ro-sata_spd=6\.0 Gbps' "read-only: link speed unchanged"
if tr -d '\r' <l2-ro.out | grep -Eq 'NCQ disabled|limiting SATA link speed|limiting speed to|configured for UDMA/1[01]0|configured for (MW|PIO)'; then
    rig_fail "read-only: libata slowed the device down"
fi
rig_ok "read-only: libata did not turn NCQ off or slow the link"
echo "PASS"
