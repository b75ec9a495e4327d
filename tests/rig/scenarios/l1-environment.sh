# L1 only: the rig itself works — a real KVM (nested SVM) and QEMU's SATA disk via libata.
. "$RIG_LIB"

[ -c /dev/kvm ] || rig_fail "/dev/kvm is missing"
rig_ok "/dev/kvm is a character device"

dmesg >dmesg.txt
rig_expect dmesg.txt 'SVM|kvm_amd|kvm-amd' "dmesg mentions SVM"
rig_expect dmesg.txt '[Nn]ested [Pp]aging enabled' "nested paging is enabled"

[ -b "$RIG_DRIVE" ] || rig_fail "$RIG_DRIVE is not a block device"
rig_ok "$RIG_DRIVE is a block device"
[ -c "$RIG_SG" ] || rig_fail "$RIG_SG is not a character device"
rig_ok "$RIG_SG is a character device"

model=$(cat /sys/block/${RIG_DRIVE#/dev/}/device/model)
echo "$RIG_DRIVE model: '$model' (QEMU was given '$RIG_MODEL')"
case "$model" in
*"$RIG_MODEL"*) rig_ok "model matches" ;;
*) rig_fail "$RIG_DRIVE model '$model' does not contain '$RIG_MODEL'" ;;
esac

# libata, not some other driver, owns the disk: it sits behind an ahci ata port.
path=$(readlink -f /sys/block/${RIG_DRIVE#/dev/})
echo "$RIG_DRIVE sysfs path: $path"
case "$path" in
*/ata[0-9]*/host*) rig_ok "$RIG_DRIVE is a libata device" ;;
*) rig_fail "$RIG_DRIVE is not below an ata port: $path" ;;
esac

size=$(cat /sys/block/${RIG_DRIVE#/dev/}/size)
echo "$RIG_DRIVE size: $size sectors"
[ "$size" -gt 0 ] || rig_fail "$RIG_DRIVE has no capacity"

grep -qw kvm_amd /proc/modules || rig_fail "kvm_amd is not loaded"
rig_ok "kvm_amd is loaded"
echo "PASS"
