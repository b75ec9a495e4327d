# A pass-through command times out on the host. The rig's slow drive (QEMU throttles it to
# RIG_SLOW_BPS bytes/s once RIG_SLOW_BURST bytes went at full speed) makes each 64 KiB read
# wait seconds; satavm passes it through with timeout=2. L1's kernel gives up on the late
# command (libata's error handler resets the slow drive's link); satavm says the command timed
# out and answers ABRT; L2's retries meet the same fate and its read ends with an I/O error
# instead of hanging. L2 keeps running, small reads work again once the throttle has drained,
# L2 powers off and satavm exits 0; L1 reads the drive afterwards.
# rig: fault-drives
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
[ -n "$RIG_SLOW_SG" ] || rig_fail "no slow drive in this L1 (scripts/rig adds the fault drives for scenarios marked '# rig: fault-drives')"
timeout=2
chunk=65536
# Past the burst, each 64 KiB read waits chunk/RIG_SLOW_BPS seconds in QEMU: more than timeout.
[ $((chunk / RIG_SLOW_BPS)) -gt "$timeout" ] ||
    rig_fail "RIG_SLOW_BPS=$RIG_SLOW_BPS moves 64 KiB within the ${timeout} s timeout"
slow=${RIG_SLOW_DRIVE#/dev/}
port=$(readlink -f "/sys/block/$slow" | sed -n 's|.*/\(ata[0-9]*\)/host.*|\1|p')
[ -n "$port" ] || rig_fail "no ata port for $RIG_SLOW_DRIVE"
echo "slow drive: $RIG_SLOW_DRIVE $RIG_SLOW_SG on $port, $RIG_SLOW_BPS bytes/s after $RIG_SLOW_BURST"
before=$(dmesg | wc -l)

rig_run_l2 l2.out --memory 256 \
    --cmdline "$(rig_l2_cmdline pt-timeout) rig.chunk=$chunk rig.burst=$RIG_SLOW_BURST" \
    --disk "passthrough=$RIG_SLOW_SG,timeout=$timeout"
rc=$?
# What L1's kernel did meanwhile. libata keeps quiet about pass-through commands that fail
# (ATA_QCFLAG_QUIET: no "exception Emask" report), but every reset re-establishes the link.
dmesg | tail -n +$((before + 1)) | grep -E "$port|sd [0-9:]+|clocksource" >l1-dmesg.txt
rig_show l1-dmesg.txt
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm kept running and exited 0 when L2 powered off"

rig_expect l2.out "$RIG_SLOW_SG: command 0x[0-9a-f]{2} at LBA [0-9]+ timed out on the host after ${timeout}s; the guest gets ABRT" \
    "satavm says a command timed out on the host"
timeouts=$(sed -n 's/.*port 0: .*host: .*errors, \([0-9]*\) timeouts.*/\1/p' l2.out)
[ -n "$timeouts" ] && [ "$timeouts" -ge 1 ] || rig_fail "satavm's summary counts '$timeouts' host timeouts"
rig_ok "satavm's summary counts $timeouts host timeouts"
resets=$(grep -c "$port: SATA link up" l1-dmesg.txt)
[ "$resets" -ge 1 ] || rig_fail "L1's libata never reset $port"
rig_ok "L1's libata reset $port's link $resets times (its error handling of the timeouts)"
rig_expect l2.out '^@@L2 slow-read=failed' "L2's read failed instead of hanging"
rig_expect l2.out '^@@L2 dmesg: .*ata1\.00: error: \{ ABRT \}' "L2's libata saw ABRT"
rig_expect l2.out '^@@L2 dmesg: .*I/O error, dev sda, sector' "L2's kernel reports an I/O error"
rig_expect l2.out '^@@L2 later-reads=ok' "small reads work again after the throttle drained"
rig_expect l2.out '^@@L2 END pt-timeout rc=0' "L2 kept running to the end of its script"
dd if="$RIG_SLOW_DRIVE" of=/dev/null bs=4k count=4 skip=4000 iflag=direct 2>/dev/null ||
    rig_fail "L1 cannot read $RIG_SLOW_DRIVE afterwards"
rig_ok "L1 reads $RIG_SLOW_DRIVE afterwards"
echo "PASS"
