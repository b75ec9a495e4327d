# L2 side of integrity-fio: fio (libaio, O_DIRECT, iodepth 32) on both disks at once, one fio
# process per disk running its stages one after the other:
#   pass1..passN  random writes of mixed block sizes over the whole disk, each block read back
#                 and checked soon after it was written (verify_backlog), the rest at the end;
#   final         no writes: every block of the last pass read back and checked (verify_only,
#                 which replays the last pass's offsets and sizes from its random seed).
# Every 512-byte interval carries fio's header (its own offset, the checksum of the rest).
# Why the checksum alternates between crc32c and xxhash, from pass to pass and from disk to
# disk: for write-only jobs fio does not check the header's random seed, nor, with mixed block
# sizes, the write sequence number. A write that never reached the disk would leave the
# previous pass's data there, and a sector meant for the other disk would carry its offset
# too, both self-consistent; checked with the other checksum, they fail.
# Sizes from the kernel command line: rig.fio_size_mb (default 256), rig.fio_passes (default 3).
set -u
size_mb=256
passes=3
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    rig.fio_size_mb=*) size_mb=${arg#rig.fio_size_mb=} ;;
    rig.fio_passes=*) passes=${arg#rig.fio_passes=} ;;
    esac
done
command -v fio >/dev/null || {
    echo "@@L2 no fio in this initramfs (the L1 side boots L2 with \$L2_INITRD_FIO)"
    exit 1
}
# The two disks probe in parallel: order them by model (A, then B), not by name.
disks=
for m in FIO-A FIO-B; do
    for d in sda sdb; do
        [ "$(tr -d ' ' <"/sys/block/$d/device/model")" = "$m" ] && disks="$disks $d"
    done
done
for d in $disks; do
    echo "@@L2 $d model=$(cat /sys/block/$d/device/model) queue_depth=$(cat /sys/block/$d/device/queue_depth)" \
        "size_mb=$(($(cat /sys/block/$d/size) / 2048))"
done
echo "@@L2 fio $(fio --version) size_mb=$size_mb passes=$passes"

# jobfile DISK INDEX: the fio job file for DISK on stdout.
jobfile() {
    cat <<EOF
[global]
filename=/dev/$1
ioengine=libaio
direct=1
iodepth=32
rw=randwrite
size=${size_mb}M
bssplit=512/5:4k/20:16k/15:64k/20:256k/20:1m/20
verify_fatal=1
EOF
    p=1
    while [ "$p" -le "$passes" ]; do
        verify=crc32c
        [ $(((p + $2) % 2)) = 0 ] || verify=xxhash
        printf '[pass%d]\nstonewall\nrandseed=%d\nverify=%s\nverify_backlog=64\n' "$p" $(($2 * 1000 + p)) "$verify"
        p=$((p + 1))
    done
    # No verify_backlog here: in a verify_only run fio would take the backlog's reads as done
    # without reading (checked on the host: a corrupted block then went unnoticed).
    printf '[final]\nstonewall\nrandseed=%d\nverify=%s\nverify_only=1\n' $(($2 * 1000 + passes)) "$verify"
}

# summary DISK: one line per job from fio's JSON output: its error, MiB read and written
# (the final job's writes are replayed, not done) and its runtime.
summary() {
    awk -v disk="$1" '
        /^      "jobname" :/ { gsub(/[",]/, "", $3); job = $3 }
        /^      "error" :/ { gsub(/,/, "", $3); err = $3 }
        /^      "(read|write|trim)" : \{/ { gsub(/"/, "", $1); sec = $1 }
        /^        "io_bytes" :/ { gsub(/,/, "", $3); bytes[sec] = $3 }
        /^      "job_runtime" :/ {
            gsub(/,/, "", $3)
            printf "@@L2 fio %s job=%s error=%s read_mib=%d write_mib=%d runtime_ms=%s\n",
                disk, job, err, bytes["read"] / 1048576, bytes["write"] / 1048576, $3
        }' "/tmp/fio.$1.json"
}

start=$(cut -d' ' -f1 /proc/uptime)
i=1
pids=
for d in $disks; do
    jobfile "$d" "$i" >"/tmp/job.$d.fio"
    # No progress lines: every console byte is an exit, and they would garble the results.
    fio --eta=never --output-format=json --output="/tmp/fio.$d.json" "/tmp/job.$d.fio" \
        >"/tmp/fio.$d.out" 2>"/tmp/fio.$d.err" &
    pids="$pids $!"
    i=$((i + 1))
done
failed=0
set -- $pids
for d in $disks; do
    wait "$1"
    rc=$?
    shift
    echo "@@L2 fio $d rc=$rc"
    [ "$rc" = 0 ] || failed=1
done
end=$(cut -d' ' -f1 /proc/uptime)
for d in $disks; do
    summary "$d"
    # fio's complaints (a verify failure names the offset, the checksums and the block).
    head -n 20 "/tmp/fio.$d.err" | sed "s/^/@@L2 fio-stderr $d: /"
done
echo "@@L2 fio seconds=$(awk "BEGIN { print $end - $start }")"
[ "$failed" = 0 ]
