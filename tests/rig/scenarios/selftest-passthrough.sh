# The built-in self-test firmware against L1's real SATA drive through SG_IO pass-through:
# the same AHCI checks, with the drive's own answers.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
"$SATAVM" --disk "passthrough=$RIG_SG" </dev/null >out 2>&1
rc=$?
rig_show out
rig_expect out "^PASS port0 identify: model=\"$RIG_MODEL\" serial=\"$RIG_SERIAL\"" "IDENTIFY came from the real drive"
rig_expect out '^PASS port0 ncq-32' "32 NCQ commands at once through pass-through"
rig_expect out '^PASS port0 error-idnf' "a read past the end fails with the drive's error, TFES and PxCI kept"
rig_expect out '^satavm-selftest: RESULT PASS' "self-test verdict PASS"
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"

# The firmware's benchmark keeps 32 NCQ commands in flight for seconds: more than the sg
# driver queues per descriptor (16), which once made host commands fail with EDOM.
"$SATAVM" --disk "passthrough=$RIG_SG" --firmware-args bench </dev/null >bench 2>&1
rc=$?
rig_show bench
rig_expect bench '^satavm-selftest: bench done' "benchmark at QD1 and QD32 through pass-through completed"
rig_expect bench 'host: [0-9]+ SG_IO commands, peak ([2-9]|[1-9][0-9]) in flight, 0 errors' "many host commands in flight, no errors"
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
echo "PASS"
