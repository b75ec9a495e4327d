# L2 side of acpi-poweroff: what Linux's ACPI saw. /init powers off after this script.
dmesg >/tmp/dmesg
grep -i acpi /tmp/dmesg | sed 's/^/@@L2 dmesg: /'
# Errors and warnings of ACPICA and the ACPI drivers: "ACPI Error", "ACPI BIOS Error (bug)",
# "ACPI Warning", "ACPI Exception", "ACPI BIOS Warning (bug)".
echo "@@L2 acpi-errors=$(grep -Eic 'ACPI( BIOS)? (Error|Warning|Exception)' /tmp/dmesg)"
echo "@@L2 madt-smp=$(grep -c 'Using ACPI (MADT) for SMP configuration' /tmp/dmesg) nproc=$(nproc)"
echo "@@L2 acpi-devices=$(cat /sys/bus/acpi/devices/*/hid 2>/dev/null | sort -u | tr '\n' ' ')"
echo "@@L2 ahci-irq=$(grep -i ahci /proc/interrupts | head -1 | tr -s ' ')"
[ -d /sys/firmware/acpi ]
