# Hot plug under Linux: satavm runs L2 with two ports, a drive on port 0 only, and a control
# socket. While L2 reads the drive in a loop, L1 pulls it (`satavm ctl S drive-del`): L2's
# reads fail with I/O errors, libata finds the link down and removes sda, nothing hangs.
# Then L1 puts a new image on the empty port 1 (`drive-add`): L2 sees a new sd device and
# reads the image's bytes. Prints the time from drive-del to L2 noticing (L1's clock: the
# request, and the moment L2's line reached L1's copy of its console).
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

truncate -s 64M a.img
dd if=/dev/urandom of=new.img bs=1M count=16 2>/dev/null
want=$(dd if=new.img bs=1M count=1 2>/dev/null | md5sum | cut -d' ' -f1)
sock=$RIG_SCRATCH/api.sock
fifo="$RIG_SCRATCH/.hotplug-stdin"
rm -f "$fifo"
mkfifo "$fifo"
exec 8<>"$fifo"
"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "$(rig_l2_cmdline hotplug-linux) rig.new_md5=$want" \
    --ports 2 --disk "path=a.img,model=HOTPLUG-FIRST" --api-socket "$sock" \
    <"$fifo" >l2.out 2>&1 &
pid=$!
uptime_s() { cut -d' ' -f1 /proc/uptime; }
rig_wait_for l2.out '^@@L2 reading' 240 "$pid" || {
    rig_show l2.out
    rig_fail "L2 did not start reading sda"
}
"$SATAVM" ctl "$sock" --events >events.out 2>&1 &
evpid=$!
"$SATAVM" ctl "$sock" query-ports >ports-before.out || rig_fail "query-ports failed"
rig_expect ports-before.out '"drive": *null' "port 1 starts empty"
sleep 2
t0=$(uptime_s)
"$SATAVM" ctl "$sock" drive-del '{"port": 0}' >del.out || { cat del.out; rig_fail "drive-del refused"; }
t1=$(uptime_s)
i=0
while ! tr -d '\r' <l2.out | grep -q '^@@L2 sda-gone'; do
    i=$((i + 1))
    [ "$i" -le 3000 ] || { rig_show l2.out; rig_fail "L2 did not notice the removal in 60 s"; }
    kill -0 "$pid" 2>/dev/null || { rig_show l2.out; rig_fail "satavm exited"; }
    sleep 0.02
done
t2=$(uptime_s)
rig_ok "drive-del answered in $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
echo "latency: drive-del to L2's sda removal seen in L1: $(awk "BEGIN{printf \"%.2f\", $t2 - $t0}") s (L1 clock, 20 ms polling)"
rig_wait_for l2.out '^@@L2 waiting-for-new' 120 "$pid" || { rig_show l2.out; rig_fail "L2 did not get to wait for the new drive"; }
"$SATAVM" ctl "$sock" drive-add '{"port": 1, "disk": "path=new.img,model=HOTPLUG-NEW"}' >add.out ||
    { cat add.out; rig_fail "drive-add refused"; }
"$SATAVM" ctl "$sock" drive-add '{"port": 1, "disk": "path=new.img"}' >add2.out &&
    rig_fail "a second drive-add on port 1 was accepted"
rig_ok "a second drive-add on the occupied port is refused: $(cat add2.out)"
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
rig_expect events.out '"data": *\{"port": *0\}, *"event": *"DRIVE_REMOVED"|"event": *"DRIVE_REMOVED", *"data": *\{"port": *0\}' "event DRIVE_REMOVED for port 0"
rig_expect events.out '"data": *\{"port": *1\}, *"event": *"DRIVE_ADDED"|"event": *"DRIVE_ADDED", *"data": *\{"port": *1\}' "event DRIVE_ADDED for port 1"
rig_expect l2.out '^@@L2 dd-ended errors=.*(I/O error|Input/output error|No such)' "L2's reads failed with an I/O error"
rig_expect l2.out '@@L2 dmesg: .*ata1: SATA link down' "libata: ata1: SATA link down"
rig_expect l2.out '^@@L2 sda-gone' "the sd device of the removed drive was removed"
rig_expect l2.out '^@@L2 new-disk=sd[a-z]+ model=HOTPLUG-NEW' "L2 found a new sd device for the added drive"
rig_expect l2.out '^@@L2 new-read=ok' "L2 read the new image's bytes correctly"
rig_expect l2.out '^@@L2 END hotplug-linux rc=0' "L2 script succeeded"
tr -d '\r' <l2.out | grep -E '^@@L2 (sda-gone|first-ata1)' | sed 's/^/L2 timeline: /'
echo "PASS"
