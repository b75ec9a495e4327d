# The installed Debian (tests/rig/debian/build-image.sh) booted through pass-through: L1 reads
# the installation's own kernel and initrd from the drive (mounted read-only, unmounted again),
# satavm passes the drive through (--disk passthrough=/dev/sgN) and boots them with
# root=UUID=...; Debian's initramfs loads ahci, finds the root by UUID, systemd comes up, root
# is logged in on ttyS0; the scenario checks `systemctl is-system-running`, writes a file,
# asks hdparm for the drive's model, and runs `systemctl poweroff`: satavm exits 0, and L1
# finds the file on the drive.
#
# Not one of tests/rig/scenarios (the image is 1 GiB and boots take minutes): run with
#   tests/rig/debian/run [--satavm PATH]
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
[ -n "$dev" ] && [ -n "$sg" ] || rig_fail "no SATAVM-RIG-DEBIAN drive in L1 (run through tests/rig/debian/run)"
rig_ok "the Debian drive is /dev/$dev, /dev/$sg"

mkdir -p /mnt/debian
mount -t ext4 -o ro,noload "/dev/${dev}1" /mnt/debian || rig_fail "cannot mount /dev/${dev}1"
cp /mnt/debian/boot/vmlinuz-* vmlinuz && cp /mnt/debian/boot/initrd.img-* initrd.img
umount /mnt/debian || rig_fail "cannot unmount /dev/${dev}1"
rig_ok "copied the installation's kernel and initrd ($(wc -c <initrd.img) bytes) from the drive"

fifo=$RIG_SCRATCH/stdin
mkfifo "$fifo"
exec 8<>"$fifo"
t0=$(cut -d' ' -f1 /proc/uptime)
"$SATAVM" --kernel vmlinuz --initramfs initrd.img --memory 1024 --cpus 2 \
    --cmdline "root=UUID=$uuid ro console=ttyS0 quiet" \
    --disk "passthrough=/dev/$sg" <"$fifo" >l2.out 2>&1 &
pid=$!

# agetty --autologin root: the shell prompt of root on satavm-debian.
if ! rig_wait_for l2.out 'root@satavm-debian:~#' 600 "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "no root shell on the serial console"
fi
t1=$(cut -d' ' -f1 /proc/uptime)
echo "figure: satavm start to the root shell on ttyS0 $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (L1 wall)"
rig_ok "systemd reached the autologin shell on ttyS0"

# type_line LINE: type LINE on L2's console a few characters at a time (the UART's input
# FIFO holds 64 bytes; a long line written at once loses its tail).
type_line() {
    printf '%s\n' "$1" | fold -w 8 | while IFS= read -r chunk; do
        printf '%s' "$chunk" >&8
        sleep 0.2
    done
    printf '\n' >&8
}
# give_up WHAT: stop satavm, show what L2 said, fail.
give_up() {
    kill -KILL "$pid" 2>/dev/null
    rig_show l2.out
    rig_fail "$1"
}
# The shell reads what is typed once it is ready: say hello until it answers. (bash's
# bracketed-paste escapes come before its output, so no pattern here is anchored; none
# matches the echo of the typed line.)
i=0
until rig_wait_for l2.out '@@DEB hello-42' 5 "$pid"; do
    i=$((i + 1))
    [ "$i" -le 12 ] || give_up "the root shell does not answer on ttyS0"
    echo 'echo "@@DEB hello-$((6*7))"' >&8
done
type_line 'for i in $(seq 150); do s=$(systemctl is-system-running); [ "$s" = starting ] || break; sleep 2; done; echo "@@DEB state=$s"; systemctl --failed --no-legend --plain | sed "s/^/@@DEB failed: /"; systemctl list-jobs --no-legend | sed "s/^/@@DEB job: /"'
rig_wait_for l2.out '@@DEB state=[a-z]' 360 "$pid" || give_up "no answer from systemctl"
type_line 'echo satavm-was-here >/root/satavm-file && sync && echo "@@DEB wrote=$(cat /root/satavm-file)"'
rig_wait_for l2.out '@@DEB wrote=satavm-was-here' 60 "$pid" || give_up "could not write the file"
type_line 'hdparm -I /dev/sda | sed -n "s/^[[:space:]]*Model Number:[[:space:]]*/@@DEB model=/p"; systemd-analyze 2>/dev/null | sed "s/^/@@DEB /"'
rig_wait_for l2.out '@@DEB model=[A-Z]' 60 "$pid" || give_up "no answer from hdparm"
type_line 'systemctl poweroff'
i=0
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 1200 ] || give_up "satavm still running 120 s after systemctl poweroff"
    sleep 0.1
done
wait "$pid"
rc=$?
exec 8>&-
rig_show l2.out
tr -d '\r' <l2.out | grep -o '@@DEB [A-Za-z].*'
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc after systemctl poweroff, expected 0"
rig_ok "satavm exited 0 after systemctl poweroff"
rig_expect l2.out '@@DEB state=(running|degraded)' "systemd is running (or degraded, failed units listed)"
rig_expect l2.out '@@DEB model=SATAVM-RIG-DEBIAN' "hdparm in L2 sees the real drive's model"

mount -t ext4 -o ro "/dev/${dev}1" /mnt/debian || rig_fail "cannot mount /dev/${dev}1 after the run"
[ "$(cat /mnt/debian/root/satavm-file 2>/dev/null)" = satavm-was-here ] || rig_fail "L1 does not find L2's file on the drive"
umount /mnt/debian
rig_ok "L1 finds the file L2 wrote, on the drive"
echo "PASS"
