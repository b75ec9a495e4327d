# satavm boots the L2 Linux guest with 2 vCPUs; L2 reports what it sees and powers off,
# and satavm exits 0 on that poweroff (ACPI S5).
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1 (was the rig run with --no-satavm?)"

t0=$(cut -d' ' -f1 /proc/uptime)
rig_run_l2 l2.out --cpus 2 --memory 256 --cmdline "$(rig_l2_cmdline l2-boot)"
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo "figure: satavm wall time (start to exit after L2's poweroff) $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
sed -n 's/.*rig-l2: userspace reached at \([0-9.]*\) s.*/figure: L2 boot to userspace \1 s (L2 uptime)/p' l2.out | tr -d '\r'
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc, expected 0 after L2's poweroff"
rig_ok "satavm exited 0"

rig_expect l2.out '^@@L2 BEGIN l2-boot' "L2 reached userspace and ran its scenario"
rig_expect l2.out '^@@L2 nproc=2$' "L2 has 2 online CPUs"
rig_expect l2.out '^@@L2 cpuinfo-processors=2$' "L2's /proc/cpuinfo lists 2 processors"
# A fixed string: Debian's 6.12 release names have a '+' ("6.12.NN+deb12-amd64").
if tr -d '\r' <l2.out | grep -qxF "@@L2 uname-r=$(uname -r)"; then
    rig_ok "L2 runs the rig's kernel ($(uname -r))"
else
    rig_fail "L2 runs the rig's kernel (no line '@@L2 uname-r=$(uname -r)' in l2.out)"
fi
rig_expect l2.out '^@@L2 END l2-boot rc=0' "L2's scenario script succeeded"
echo "PASS"
