# Input on satavm's stdin reaches L2's serial console: boot L2 to its interactive
# shell (no rig.scenario), type a command once the prompt is up, check its output,
# then `exit` the shell, which powers L2 off and ends satavm with status 0.
# This is the path `scripts/rig shell` gives people.
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1 (was the rig run with --no-satavm?)"

fifo=$RIG_SCRATCH/stdin
mkfifo "$fifo"
exec 8<>"$fifo" # held open: satavm sees an idle input, not end-of-file

"$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" --memory 256 \
    --cmdline "console=ttyS0 panic=-1 quiet $RIG_L2_APPEND" <"$fifo" >l2.out 2>&1 &
pid=$!

# The L2 shell's prompt (PS1 from L2's /etc/profile) is 'l2 /# '.
if ! rig_wait_for l2.out 'l2 /# ' 240 "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "no L2 shell prompt"
fi
rig_ok "L2 shell prompt is up"

# Expanded by L2's shell, so typed-42 appears only if the line was read and run there
# (the terminal's echo of the typed line shows the unexpanded text).
echo 'echo typed-$((6*7))' >&8
if ! rig_wait_for l2.out 'typed-42' 60 "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "the typed command's output never appeared"
fi
rig_ok "L2 ran the command typed on satavm's stdin"

echo 'exit' >&8
wait "$pid"
rc=$?
exec 8>&-
rig_show l2.out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc after the L2 shell exited, expected 0"
rig_ok "satavm exited 0 when L2 powered off"
echo "PASS"
