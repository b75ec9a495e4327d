# L2 side of acpi-off: which description of the machine Linux used, and a disk read.
if [ -d /sys/firmware/acpi ]; then echo "@@L2 acpi=yes"; else echo "@@L2 acpi=no"; fi
if dmesg | grep -q 'Intel MultiProcessor Specification'; then
    echo "@@L2 mptable=yes"
else
    echo "@@L2 mptable=no"
fi
echo "@@L2 nproc=$(nproc)"
# A read that needs the AHCI function's interrupt (MSI, or INTx through the routing).
if dd if=/dev/sda of=/dev/null bs=64k count=64 2>/dev/null; then
    echo "@@L2 disk=ok"
else
    echo "@@L2 disk=failed"
fi
