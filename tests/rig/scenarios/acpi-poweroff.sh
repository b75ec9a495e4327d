# satavm boots L2 with its ACPI tables; L2 lists what Linux's ACPI said, and its init powers
# off (`poweroff -f`: the sleep control register, S5), which ends satavm with status 0.
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

truncate -s 64M disk.img
export RUST_LOG=satavm=info
rig_run_l2 l2.out --cpus 2 --memory 256 --disk path=disk.img \
    --cmdline "$(rig_l2_cmdline acpi-poweroff)"
rc=$?
unset RUST_LOG
sed -n 's/.*rig-l2: userspace reached at \([0-9.]*\) s.*/figure: L2 boot to userspace with ACPI \1 s (L2 uptime)/p' l2.out | tr -d '\r'
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc, expected 0 after L2's poweroff"
rig_ok "satavm exited 0"

rig_expect l2.out '^@@L2 END acpi-poweroff rc=0' "L2's scenario script succeeded"
for t in RSDP XSDT FACP DSDT APIC; do
    rig_expect l2.out "^@@L2 dmesg: .*ACPI: $t 0x0*E0" "L2 found the $t table in the BIOS area"
done
rig_expect l2.out '^@@L2 dmesg: .*ACPI: Interpreter enabled' "ACPI interpreter enabled"
rig_expect l2.out '^@@L2 dmesg: .*PNP0A03:00' "the PCI root bridge enumerated from the DSDT"
rig_expect l2.out '^@@L2 acpi-errors=0$' "no ACPI errors or warnings in L2's dmesg"
rig_expect l2.out '^@@L2 madt-smp=1 nproc=2$' "L2 took its 2 CPUs from the MADT"
rig_expect l2.out '^@@L2 acpi-devices=.*PNP0501.*' "COM1 is an ACPI device"
rig_expect l2.out '^@@L2 acpi-devices=.*QEMU0001.*' "pvpanic is an ACPI device"
rig_expect l2.out '^@@L2 ahci-irq=.*ahci' "the AHCI function has its interrupt"
rig_expect l2.out 'reboot: Power down' "L2 powered down"
rig_expect l2.out 'ACPI: sleep control register: S5, power off' "through the sleep control register"
echo "PASS"
