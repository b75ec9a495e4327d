# L2 side of acpi-halt: halt now; without ACPI, try to power off (Linux halts instead).
sync
if [ -d /sys/firmware/acpi ]; then
    echo "@@L2 acpi-halt: halt -f"
    halt -f
else
    echo "@@L2 acpi-halt: poweroff -f"
    poweroff -f
fi
sleep 10
