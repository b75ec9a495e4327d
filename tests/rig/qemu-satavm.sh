#!/bin/sh
# A stand-in for satavm inside the rig's L1: QEMU with KVM, taking satavm's options.
# It checks the rig itself (L2 initramfs, scenarios) independently of satavm, and gives
# a reference AHCI implementation to compare against. Use:
#   RIG_L1_BINARIES=qemu-system-x86_64 RIG_L1_FILES="/usr/share/seabios /usr/share/qemu" \
#     scripts/rig run --satavm tests/rig/qemu-satavm.sh l2-boot
# Supports --kernel --initramfs --cmdline --cpus --memory and --disk path=FILE|passthrough=DEV
# (model=, serial=, readonly=on are passed to QEMU's ide-hd; passthrough uses the block device).
kernel= initrd= cmdline= cpus=1 memory=256 disks=0
set -- "$@" --end
while [ "$1" != --end ]; do
    case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --initramfs) initrd=$2; shift 2 ;;
    --cmdline) cmdline=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --disk)
        file= props=
        for kv in $(echo "$2" | tr ',' ' '); do
            case "$kv" in
            path=*) file=${kv#path=} ;;
            passthrough=/dev/sg*) # the block device of that SCSI generic node
                file=/dev/$(ls "/sys/class/scsi_generic/${kv#passthrough=/dev/}/device/block") ;;
            passthrough=*) file=${kv#passthrough=} ;;
            readonly=on) props="$props,readonly=on" ;;
            *) props="$props,$kv" ;;
            esac
        done
        ro=
        case "$props" in *readonly=on*) ro=",readonly=on"; props=$(echo "$props" | sed 's/,readonly=on//') ;; esac
        set -- "$@" -drive "if=none,id=d$disks,file=$file,format=raw$ro" \
            -device "ide-hd,drive=d$disks,bus=ahci.$disks$props"
        disks=$((disks + 1))
        shift 2
        ;;
    *) echo "qemu-satavm: unknown option $1" >&2; exit 2 ;;
    esac
done
shift # --end
exec qemu-system-x86_64 -L /usr/share/seabios -L /usr/share/qemu -accel kvm -cpu host \
    -nodefaults -display none -no-reboot -serial stdio -monitor none \
    -smp "$cpus" -m "$memory" -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
    -device ahci,id=ahci "$@"
