# A killed VMM loses nothing the guest had flushed: L2 writes numbered blocks and flushes after
# every batch, printing `@@L2 flushed N` once the flush completed
# (tests/rig/l2/integrity-kill.sh); L1 kills satavm with SIGKILL at a random point of that
# workload, then checks that blocks 0..N-1 of the image, N from the last marker satavm got
# out, are exactly what L2 wrote.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
blocks=${RIG_KILL_BLOCKS:-1984}
truncate -s 128M kill.img
fifo="$RIG_SCRATCH/.kill-stdin"
rm -f "$fifo"
mkfifo "$fifo"
exec 8<>"$fifo"
"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "$(rig_l2_cmdline integrity-kill) rig.kill_blocks=$blocks" \
    --disk path=kill.img,model=KILL-DISK <"$fifo" >l2.out 2>&1 &
pid=$!
# Wait for the workload to be under way, then kill at a random point 0 to 3 s later.
rig_wait_for l2.out '^@@L2 flushed (3[2-9]|[4-9][0-9]|[1-9][0-9][0-9]+)$' 240 "$pid" || {
    rig_show l2.out
    rig_fail "the write workload did not get going"
}
delay=$(($(od -An -tu2 -N2 /dev/urandom) % 31))
sleep "$((delay / 10)).$((delay % 10))"
kill -9 "$pid" 2>/dev/null || rig_fail "satavm was gone before the kill"
wait "$pid"
rc=$?
exec 8>&-
rm -f "$fifo"
[ "$rc" = 137 ] || rig_fail "satavm exited with $rc, not by SIGKILL (137)"
rig_ok "satavm killed with SIGKILL after $((delay / 10)).$((delay % 10)) s"
tr -d '\r' <l2.out | grep -q '^@@L2 all .* blocks written' && rig_fail "the workload ended before the kill (raise RIG_KILL_BLOCKS)"
tr -d '\r' <l2.out | grep -q 'WRITE-ERROR' && { rig_show l2.out; rig_fail "a write failed in L2"; }
n=$(tr -d '\r' <l2.out | sed -n 's/^@@L2 flushed \([0-9]*\)$/\1/p' | tail -n 1)
[ -n "$n" ] || rig_fail "no flushed marker"
echo "last flushed marker: $n blocks"
# Expected content of blocks 0..n-1, built as L2 builds it.
: >expected
k=0
while [ "$k" -lt "$n" ]; do
    printf '%-63s\n' "integrity-kill block $k" >l
    cat l l l l l l l l >s
    cat s s s s s s s s >p
    cat p p p p p p p p p p p p p p p p >>expected
    k=$((k + 1))
done
dd if=kill.img bs=64k count="$n" 2>/dev/null >got
if ! cmp got expected >cmp.out 2>&1; then
    cat cmp.out
    byte=$(sed -n 's/.* byte \([0-9]*\).*/\1/p' cmp.out)
    [ -n "$byte" ] && echo "first difference in block $(((byte - 1) / 65536))"
    rig_fail "a flushed block is not intact after the kill"
fi
rig_ok "all $n flushed blocks are intact"
# For information: how far the unflushed batch got.
extra=0
while :; do
    k=$((n + extra))
    printf '%-63s\n' "integrity-kill block $k" >l
    cat l l l l l l l l >s
    want=$(cat s s s s s s s s | md5sum | cut -d' ' -f1)
    got=$(dd if=kill.img bs=4096 skip=$((k * 16)) count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || break
    extra=$((extra + 1))
done
echo "blocks past the last marker whose first 4 KiB arrived: $extra"
echo "PASS"
