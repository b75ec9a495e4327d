# The control socket on a pass-through drive under Linux: satavm passes L1's drive through
# on port 0 of two (--ports 2). While L2 reads it: query-stats twice (the JSON replies go to
# the log as "json: NAME {...}" lines; tests/rig.rs parses them and checks that the counters
# moved), an injection rule added at run time (UNC on reads of one LBA range) that L2's
# libata reports, listed, then removed (the reads succeed again); then a surprise removal
# (drive-del): libata finds the link down, sda goes, the reads end with errors, nothing
# hangs; then the same drive put back on the empty port 1 (drive-add passthrough=...): a new
# sd device whose first MiB equals L1's own read of the drive.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

want=$(dd if="$RIG_DRIVE" bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
bad=4096 # the LBA range 4096-4103 (one 4 KiB page) that the runtime rule fails
sock=$RIG_SCRATCH/api.sock
fifo="$RIG_SCRATCH/.hotplug-stdin"
rm -f "$fifo"
mkfifo "$fifo"
exec 8<>"$fifo"
"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "$(rig_l2_cmdline hotplug-passthrough) rig.new_md5=$want rig.bad_lba=$bad" \
    --ports 2 --disk "passthrough=$RIG_SG" --api-socket "$sock" <"$fifo" >l2.out 2>&1 &
pid=$!
ctl() { "$SATAVM" ctl "$sock" "$@"; }
# wait_l2 PATTERN SECS WHAT: wait for L2's line, or show its console and fail.
wait_l2() {
    rig_wait_for l2.out "$1" "$2" "$pid" || {
        kill "$pid" 2>/dev/null
        rig_show l2.out
        rig_fail "$3"
    }
}
wait_l2 '^@@L2 reading' 240 "L2 did not start reading sda"
ctl --events >events.out 2>&1 &
evpid=$!

# Statistics while the reads run: two snapshots a second apart.
ctl query-stats >stats1.out || rig_fail "query-stats failed: $(cat stats1.out)"
sleep 1
ctl query-stats >stats2.out || rig_fail "query-stats failed: $(cat stats2.out)"
echo "json: stats-before $(cat stats1.out)"
echo "json: stats-after $(cat stats2.out)"
rig_ok "query-stats answered twice while L2 read"

# A fault added and removed at run time.
wait_l2 '^@@L2 probe ok$' 60 "L2's first read of LBA $bad failed"
ctl inject-add "{\"rule\": \"port=0,op=read,lba=$bad-$((bad + 7)),error=unc\"}" >add-rule.out ||
    rig_fail "inject-add refused: $(cat add-rule.out)"
# satavm ctl prints the whole reply: {"id": request, "return": {"id": rule}}.
id=$(sed -n 's/.*"return": *{"id": *\([0-9]*\).*/\1/p' add-rule.out)
[ -n "$id" ] || rig_fail "inject-add returned no id: $(cat add-rule.out)"
echo "json: inject-add $(cat add-rule.out)"
ctl inject-list >list.out || rig_fail "inject-list failed"
echo "json: inject-list $(cat list.out)"
wait_l2 '^@@L2 probe failed' 120 "L2's reads of LBA $bad did not fail after inject-add"
rig_ok "after inject-add, L2's read of LBA $bad failed"
ctl inject-del "{\"id\": $id}" >del-rule.out || rig_fail "inject-del refused: $(cat del-rule.out)"
wait_l2 '^@@L2 probe ok again' 120 "L2's reads of LBA $bad did not recover after inject-del"
rig_ok "after inject-del, L2 reads LBA $bad again"

# Surprise removal of the pass-through drive, then the same drive on port 1.
wait_l2 '^@@L2 ready-for-removal' 60 "L2 did not get ready for the removal"
t0=$(cut -d' ' -f1 /proc/uptime)
ctl drive-del '{"port": 0}' >del.out || rig_fail "drive-del refused: $(cat del.out)"
wait_l2 '^@@L2 sda-gone' 60 "L2 did not notice the removal in 60 s"
t1=$(cut -d' ' -f1 /proc/uptime)
echo "latency: drive-del to L2's sda removal seen in L1: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s (L1 clock, 100 ms polling)"
wait_l2 '^@@L2 waiting-for-new' 120 "L2 did not get to wait for the new drive"
# The drive's locks and fds go once its host I/O drained: retry while it still drains.
i=0
until ctl drive-add "{\"port\": 1, \"disk\": \"passthrough=$RIG_SG\"}" >add.out 2>&1; do
    i=$((i + 1))
    [ "$i" -le 50 ] || rig_fail "drive-add of $RIG_SG refused: $(cat add.out)"
    sleep 0.1
done
rig_ok "drive-add put $RIG_SG back, on port 1"
i=0
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 1200 ] || { kill "$pid"; rig_show l2.out; rig_fail "L2 hung after drive-add"; }
    sleep 0.1
done
wait "$pid"
rc=$?
exec 8>&-
rm -f "$fifo"
wait "$evpid" 2>/dev/null
rig_show l2.out
rig_show events.out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"
rig_expect l2.out '@@L2 dmesg: .*error: \{ UNC \}' "libata reported the injected error (UNC)"
rig_expect l2.out "@@L2 dmesg: .*I/O error, dev sda, sector $bad" "the block layer reported LBA $bad failed"
rig_expect events.out '"event": *"DRIVE_ERROR"' "event DRIVE_ERROR for the injected error"
rig_expect events.out '"event": *"DRIVE_REMOVED"' "event DRIVE_REMOVED"
rig_expect events.out '"event": *"DRIVE_ADDED"' "event DRIVE_ADDED"
rig_expect l2.out '^@@L2 dd-ended errors=.*(I/O error|Input/output error|No such)' "L2's reads failed with an I/O error"
rig_expect l2.out '@@L2 dmesg: .*ata1: SATA link down' "libata: ata1: SATA link down"
rig_expect l2.out '^@@L2 new-disk=sd[a-z]+' "L2 found a new sd device for the drive put back"
rig_expect l2.out '^@@L2 new-read=ok' "the drive put back reads what L1 reads"
rig_expect l2.out '^@@L2 END hotplug-passthrough rc=0' "L2 script succeeded"
