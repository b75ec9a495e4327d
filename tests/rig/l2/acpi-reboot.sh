# L2 side of acpi-reboot: reboot now (Linux tries the ACPI reset register first).
echo "@@L2 acpi-reboot: rebooting"
sync
reboot -f
sleep 10
