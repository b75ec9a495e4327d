# The installed Debian (tests/rig/debian/build-image.sh) on one of L1's drives, booted three
# ways in one L1, each up to the root shell on ttyS0 and then `systemctl poweroff`:
#   pt     satavm passing the drive through (--disk passthrough=/dev/sgN): the installation's
#          own kernel and initrd, read from the drive in L1 first (mounted read-only,
#          unmounted again), root=UUID=...; Debian's initramfs loads ahci, finds the root by
#          UUID, systemd comes up, root is logged in by agetty. Checked: systemctl
#          is-system-running (running, or degraded with the failed units listed), a file
#          written, hdparm -I's model (the real drive's), satavm's exit status 0, then in L1
#          a clean e2fsck -fn of the filesystem and the file on it.
#   image  the same installation as an image file on L1's tmpfs (only its used blocks
#          copied: e2image), satavm's emulated drive over it (--disk path=FILE).
#   qemu   QEMU in L1 (KVM, its ich9-ahci with an ide-hd on the drive, cache=none), the
#          anchor for the boot times.
# Each prints "figure: NAME boot to the root shell S s (L1 wall)" and systemd-analyze's line.
# rig: debian-drive
. "$RIG_LIB"

[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
uuid=5a7a0000-0019-4d65-8000-000000000019 # build-image.sh's
# The drive probes beside the others; sysfs has the SCSI model, 16 characters of IDENTIFY's.
dev= sg= i=0
while [ -z "$sg" ] && [ "$i" -lt 200 ]; do
    for d in /sys/block/sd*; do
        if grep -q SATAVM-RIG-DEB "$d/device/model" 2>/dev/null; then
            dev=${d##*/}
            sg=$(ls "$d/device/scsi_generic" 2>/dev/null | head -1)
        fi
    done
    [ -n "$sg" ] || { i=$((i + 1)); sleep 0.1; }
done
[ -n "$dev" ] && [ -n "$sg" ] || rig_fail "no SATAVM-RIG-DEBIAN drive in L1 (the rig adds it for this scenario: tests/rig/debian/run)"
rig_ok "the Debian drive is /dev/$dev, /dev/$sg"
for tool in e2fsck e2image debugfs qemu-system-x86_64; do
    command -v "$tool" >/dev/null || rig_fail "no $tool in L1 (tests/rig/debian/run --env adds it)"
done

mkdir -p /mnt/debian
mount -t ext4 -o ro,noload "/dev/${dev}1" /mnt/debian || rig_fail "cannot mount /dev/${dev}1"
cp /mnt/debian/boot/vmlinuz-* vmlinuz && cp /mnt/debian/boot/initrd.img-* initrd.img
umount /mnt/debian || rig_fail "cannot unmount /dev/${dev}1"
rig_ok "copied the installation's kernel and initrd ($(wc -c <initrd.img) bytes) from the drive"
cmdline="root=UUID=$uuid ro console=ttyS0 quiet"

# type_line LINE: type LINE on the guest's console a few characters at a time (a UART's
# input FIFO holds 16 to 64 bytes; a long line written at once loses its tail).
type_line() {
    printf '%s\n' "$1" | fold -w 8 | while IFS= read -r chunk; do
        printf '%s' "$chunk" >&8
        sleep 0.2
    done
    printf '\n' >&8
}
# give_up WHAT: stop the VMM, show what the guest said, fail.
give_up() {
    kill -KILL "$pid" 2>/dev/null
    rig_show "$out"
    rig_fail "$name: $1"
}

# debian_boot NAME COMMAND...: boot the installation with COMMAND (its console on
# stdin/stdout), wait for the root shell, ask systemd and hdparm, write /root/NAME-file,
# power off; sets rc to COMMAND's exit status. The guest's console goes to NAME.out.
debian_boot() {
    name=$1 out=$1.out
    shift
    # Every boot starts from a cold page cache in L1.
    sync
    echo 3 >/proc/sys/vm/drop_caches
    rm -f "$RIG_SCRATCH/stdin"
    mkfifo "$RIG_SCRATCH/stdin"
    exec 8<>"$RIG_SCRATCH/stdin"
    t0=$(cut -d' ' -f1 /proc/uptime)
    "$@" <"$RIG_SCRATCH/stdin" >"$out" 2>&1 &
    pid=$!
    # agetty --autologin root: the shell prompt of root on satavm-debian.
    rig_wait_for "$out" 'root@satavm-debian:~#' 600 "$pid" || give_up "no root shell on the serial console"
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "figure: $name boot to the root shell $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (L1 wall)"
    rig_ok "$name: systemd reached the autologin shell on ttyS0"
    # The shell reads what is typed once it is ready: say hello until it answers. (bash's
    # bracketed-paste escapes come before its output, so no pattern here is anchored; none
    # matches the echo of the typed line.)
    i=0
    until rig_wait_for "$out" '@@DEB hello-42' 5 "$pid"; do
        i=$((i + 1))
        [ "$i" -le 12 ] || give_up "the root shell does not answer on ttyS0"
        echo 'echo "@@DEB hello-$((6*7))"' >&8
    done
    type_line 'for i in $(seq 150); do s=$(systemctl is-system-running); [ "$s" = starting ] || break; sleep 2; done; echo "@@DEB state=$s"; systemctl --failed --no-legend --plain | sed "s/^/@@DEB failed: /"; systemctl list-jobs --no-legend | sed "s/^/@@DEB job: /"'
    rig_wait_for "$out" '@@DEB state=[a-z]' 360 "$pid" || give_up "no answer from systemctl"
    type_line "echo $name-was-here >/root/$name-file && sync && echo \"@@DEB wrote=\$(cat /root/$name-file)\""
    rig_wait_for "$out" "@@DEB wrote=$name-was-here" 60 "$pid" || give_up "could not write the file"
    type_line 'hdparm -I /dev/sda | sed -n "s/^[[:space:]]*Model Number:[[:space:]]*/@@DEB model=/p"; systemd-analyze 2>/dev/null | sed "s/^/@@DEB /"'
    rig_wait_for "$out" '@@DEB model=[A-Z]' 60 "$pid" || give_up "no answer from hdparm"
    type_line 'systemctl poweroff'
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 1200 ] || give_up "still running 120 s after systemctl poweroff"
        sleep 0.1
    done
    wait "$pid"
    rc=$?
    exec 8>&-
    rig_show "$out"
    # What the guest answered (not the echo of the typed lines, which hold $ or quotes).
    tr -d '\r' <"$out" | grep -o '@@DEB [A-Za-z].*' | grep -v '[$"]' | sed "s/^@@DEB /$name: /"
    rig_expect "$out" '@@DEB state=(running|degraded)' "$name: systemd is running (or degraded, failed units listed)"
}

# fsck_clean WHAT DEVICE: e2fsck -fn finds DEVICE's filesystem clean.
fsck_clean() {
    _rc=0
    e2fsck -fn "$2" >fsck.out 2>&1 || _rc=$?
    if [ "$_rc" != 0 ]; then
        cat fsck.out
        rig_fail "$1: e2fsck -fn $2 found problems (status $_rc)"
    fi
    rig_ok "$1: e2fsck -fn finds the filesystem clean"
}

# (1) satavm, the drive passed through.
debian_boot pt "$SATAVM" --kernel vmlinuz --initramfs initrd.img --memory 1024 --cpus 2 \
    --cmdline "$cmdline" --disk "passthrough=/dev/$sg"
[ "$rc" = 0 ] || rig_fail "pt: satavm exited with status $rc after systemctl poweroff, expected 0"
rig_ok "pt: satavm exited 0 after systemctl poweroff"
rig_expect pt.out '@@DEB model=SATAVM-RIG-DEBIAN' "pt: hdparm in L2 sees the real drive's model"
fsck_clean pt "/dev/${dev}1"
mount -t ext4 -o ro "/dev/${dev}1" /mnt/debian || rig_fail "cannot mount /dev/${dev}1 after the run"
found=$(cat /mnt/debian/root/pt-file 2>/dev/null)
umount /mnt/debian
[ "$found" = pt-was-here ] || rig_fail "pt: L1 does not find L2's file on the drive"
rig_ok "pt: L1 finds the file L2 wrote, on the drive"

# (2) satavm, the same installation as an image file (the MBR, then the used blocks).
img=$RIG_SCRATCH/debian.img
truncate -s "$(blockdev --getsize64 "/dev/$dev")" "$img"
dd if="/dev/$dev" of="$img" bs=1M count=1 conv=notrunc 2>/dev/null || rig_fail "cannot copy the MBR"
e2image -ra -O 1048576 "/dev/${dev}1" "$img" || rig_fail "e2image could not copy the filesystem"
rig_ok "image: the installation copied into $img ($(du -k "$img" | cut -f1) KiB used)"
debian_boot image "$SATAVM" --kernel vmlinuz --initramfs initrd.img --memory 1024 --cpus 2 \
    --cmdline "$cmdline" --disk "path=$img,model=SATAVM DEBIAN IMAGE"
[ "$rc" = 0 ] || rig_fail "image: satavm exited with status $rc after systemctl poweroff, expected 0"
rig_ok "image: satavm exited 0 after systemctl poweroff"
rig_expect image.out '@@DEB model=SATAVM DEBIAN IMAGE' "image: hdparm in L2 sees the emulated drive's model"
fsck_clean image "$img?offset=1048576"
[ "$(debugfs -R 'cat /root/image-file' "$img?offset=1048576" 2>/dev/null)" = image-was-here ] ||
    rig_fail "image: L1 does not find L2's file in the image"
rig_ok "image: L1 finds the file L2 wrote, in the image"
rm -f "$img"

# (3) QEMU in L1 on the drive: its AHCI (ich9-ahci), the anchor.
debian_boot qemu qemu-system-x86_64 -L /usr/share/seabios -L /usr/share/qemu -accel kvm \
    -cpu host -nodefaults -display none -no-reboot -monitor none -serial stdio -smp 2 -m 1024 \
    -kernel vmlinuz -initrd initrd.img -append "$cmdline" -device ich9-ahci,id=ahci \
    -drive "if=none,id=d,file=/dev/$dev,format=raw,cache=none,aio=native" \
    -device ide-hd,drive=d,bus=ahci.0
[ "$rc" = 0 ] || rig_fail "qemu: QEMU exited with status $rc after systemctl poweroff, expected 0"
rig_ok "qemu: QEMU exited 0 after systemctl poweroff"
fsck_clean qemu "/dev/${dev}1"
echo "PASS"
