# L2 side of acpi-panic: check that pvpanic is bound, then crash the kernel.
if ls /sys/bus/platform/drivers/pvpanic-mmio/ 2>/dev/null | grep -q QEMU0001; then
    echo "@@L2 pvpanic=bound"
else
    echo "@@L2 pvpanic=unbound: $(ls /sys/bus/platform/drivers/ 2>&1 | tr '\n' ' ')"
fi
sync
echo c >/proc/sysrq-trigger
sleep 10
