# L2 side of acpi-halt: halt now.
echo "@@L2 acpi-halt: halting"
sync
halt -f
sleep 10
