# L2 with `acpi=off` still boots on satavm's MP table (2 CPUs, the IOAPIC, the AHCI
# function's INTx routing) and ends with a reboot, status 80: without ACPI, Linux cannot power
# off. The same L2 boots with ACPI too, alternately, twice each, to compare boot times side by
# side (one boot each is within the rig's noise).
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
truncate -s 64M disk.img

uptime_at_userspace() {
    sed -n 's/.*rig-l2: userspace reached at \([0-9.]*\) s.*/\1/p' "$1" | tr -d '\r'
}
with= without=
for i in 1 2; do
    rig_run_l2 with$i.out --cpus 2 --memory 256 --disk path=disk.img \
        --cmdline "$(rig_l2_cmdline acpi-off)"
    rc=$?
    [ "$rc" = 0 ] || rig_fail "with ACPI: satavm exited $rc, expected 0 (powered off)"
    rig_expect with$i.out '^@@L2 acpi=yes$' "with ACPI ($i): L2 has ACPI"
    with="$with $(uptime_at_userspace with$i.out)"

    rig_run_l2 without$i.out --cpus 2 --memory 256 --disk path=disk.img \
        --cmdline "$(rig_l2_cmdline acpi-off) acpi=off"
    rc=$?
    [ "$rc" = 80 ] || rig_fail "acpi=off: satavm exited $rc, expected 80 (rebooted)"
    without="$without $(uptime_at_userspace without$i.out)"
done
rig_ok "with ACPI: satavm exited 0"
rig_ok "acpi=off: satavm exited 80 after L2's reboot"
mean() { echo "$@" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }'; }
echo "figure: L2 boot to userspace (L2 uptime, s): with ACPI$with (mean $(mean $with)), with acpi=off$without (mean $(mean $without))"

rig_expect without1.out '^@@L2 acpi=no$' "acpi=off: L2 has no ACPI"
rig_expect without1.out '^@@L2 mptable=yes$' "acpi=off: L2 read the MP table"
rig_expect without1.out '^@@L2 nproc=2$' "acpi=off: L2 has both CPUs"
rig_expect without1.out '^@@L2 disk=ok$' "acpi=off: L2 reads the AHCI disk"
rig_expect without1.out '^@@L2 END acpi-off rc=0' "acpi=off: L2's scenario script succeeded"
echo "PASS"
