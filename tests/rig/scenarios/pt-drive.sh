# satavm passes L1's real SATA drive (QEMU's disk under L1's libata, /dev/sg0) through to L2
# with SG_IO: L2 sees the drive's own model and serial, its flushed writes are on the drive
# when L1 reads it afterwards, parallel I/O keeps several host commands in flight, and a
# dangerous command (SECURITY ERASE PREPARE) is refused without reaching the drive.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

rig_run_l2 l2.out --cpus 2 --memory 512 --cmdline "$(rig_l2_cmdline pt-drive)" \
    --disk "passthrough=$RIG_SG"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"

rig_expect l2.out "^@@L2 model=$RIG_MODEL" "L2 sees the drive's model ($RIG_MODEL): IDENTIFY came from the drive"
rig_expect l2.out "^@@L2 serial=$RIG_SERIAL\$" "L2 sees the drive's serial ($RIG_SERIAL)"
rig_expect l2.out 'ata1\.00: .*NCQ \(depth 32\)' "L2's libata uses NCQ on the pass-through drive"
rig_expect l2.out '^@@L2 parallel=done' "parallel workload finished"
rig_expect l2.out '^@@L2 security-erase=refused' "SECURITY ERASE PREPARE failed in L2"
rig_expect l2.out 'guest command 0xf3 .*refused, not sent to the drive' "satavm refused F3h before the drive"
rig_expect l2.out "^@@L2 hdparm-I: Serial Number: *$RIG_SERIAL" "the drive answers after the refusal"
rig_expect l2.out '^@@L2 END pt-drive rc=0' "L2 script succeeded"

want=$(sed -n 's/^@@L2 pattern-md5=\([0-9a-f]*\).*/\1/p' l2.out | tr -d '\r')
rb=$(sed -n 's/^@@L2 readback-md5=\([0-9a-f]*\).*/\1/p' l2.out | tr -d '\r')
[ -n "$want" ] && [ "$want" = "$rb" ] || rig_fail "L2 read back $rb, wrote $want"
got=$(dd if="$RIG_DRIVE" bs=1M skip=100 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$want" = "$got" ] || rig_fail "L1's $RIG_DRIVE holds $got at 100 MiB, L2 wrote $want"
rig_ok "L1 reads L2's pattern from $RIG_DRIVE ($got)"

peak=$(sed -n 's/.*port 0: .*host: [0-9]* SG_IO commands, peak \([0-9]*\) in flight.*/\1/p' l2.out)
[ -n "$peak" ] && [ "$peak" -gt 1 ] || rig_fail "peak host commands in flight '$peak', expected more than 1"
rig_ok "peak $peak host commands in flight"

# The data moved without a copy in satavm and without a worker thread: the sg engine (the
# driver's asynchronous interface), nothing bounced.
grep -q 'port 0: .*; engine sg-v3: .* 0 B bounced' l2.out ||
    rig_fail "satavm did not use the sg engine without bouncing: $(grep 'port 0:' l2.out)"
rig_ok "the sg engine moved every command's data, 0 B bounced"
echo "PASS"
