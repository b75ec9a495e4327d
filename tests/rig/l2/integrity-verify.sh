# L2 side of integrity-verify: concurrent O_DIRECT writes and reads (NCQ) on two disks, then
# every region read back and compared. Each disk has its own random source; region R holds
# the source rotated by R MiB, so each sector's content is unique to its place on the disk.
# Sizes from the kernel command line: rig.region_mb (default 32), rig.regions (default 4).
set -u
set -o pipefail
reg=32
regions=4
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    rig.region_mb=*) reg=${arg#rig.region_mb=} ;;
    rig.regions=*) regions=${arg#rig.regions=} ;;
    esac
done
# The two disks probe in parallel: order them by model (A, then B), not by name.
disks=
for m in INTEGRITY-A INTEGRITY-B; do
    for d in sda sdb; do
        [ "$(tr -d ' ' <"/sys/block/$d/device/model")" = "$m" ] && disks="$disks $d"
    done
done
for d in $disks; do
    echo "@@L2 $d model=$(cat /sys/block/$d/device/model) queue_depth=$(cat /sys/block/$d/device/queue_depth)"
    head -c $((reg << 20)) /dev/urandom >/tmp/src.$d || exit 1
done
echo "@@L2 regions=$regions region_mb=$reg"

# rotated SRC ROT: SRC rotated by ROT MiB, on stdout.
rotated() {
    dd if="$1" bs=1M skip="$2" 2>/dev/null
    dd if="$1" bs=1M count="$2" 2>/dev/null
}

# write_region DISK REGION ROT: region REGION of DISK := its source rotated by ROT MiB.
write_region() {
    base=$(($2 * reg))
    dd if=/tmp/src.$1 of=/dev/$1 bs=1M skip="$3" seek="$base" count=$((reg - $3)) \
        oflag=direct conv=notrunc 2>/tmp/err.$1.$2 &&
        dd if=/tmp/src.$1 of=/dev/$1 bs=1M seek=$((base + reg - $3)) count="$3" \
            oflag=direct conv=notrunc 2>>/tmp/err.$1.$2 ||
        echo "@@L2 WRITE-ERROR $1 region $2: $(cat /tmp/err.$1.$2)"
}

# verify_region DISK REGION ROT: read region REGION of DISK with O_DIRECT and compare.
verify_region() {
    want=$(rotated /tmp/src.$1 "$3" | md5sum | cut -d' ' -f1)
    got=$(dd if=/dev/$1 bs=1M skip=$(($2 * reg)) count="$reg" iflag=direct 2>/tmp/rerr.$1.$2 |
        md5sum | cut -d' ' -f1) || got="read-error:$(cat /tmp/rerr.$1.$2)"
    if [ "$got" = "$want" ]; then
        echo "@@L2 verify $1 region $2 rot $3 ok $got"
    else
        echo "@@L2 verify $1 region $2 rot $3 MISMATCH want $want got $got"
    fi
}

start=$(cut -d' ' -f1 /proc/uptime)
# Phase 1: every region of both disks written at once.
for d in $disks; do
    r=0
    while [ "$r" -lt "$regions" ]; do
        write_region "$d" "$r" "$r" &
        r=$((r + 1))
    done
done
wait
echo "@@L2 phase 1 (write all) done"
# Phase 2: the first half verified while the second half is rewritten (another rotation).
half=$((regions / 2))
for d in $disks; do
    r=0
    while [ "$r" -lt "$regions" ]; do
        if [ "$r" -lt "$half" ]; then
            verify_region "$d" "$r" "$r" >/tmp/v2.$d.$r &
        else
            write_region "$d" "$r" $((r + regions)) &
        fi
        r=$((r + 1))
    done
done
wait
cat /tmp/v2.* 2>/dev/null
echo "@@L2 phase 2 (mixed) done"
# Phase 3: caches dropped, everything read back at once.
sync
echo 3 >/proc/sys/vm/drop_caches
for d in $disks; do
    r=0
    while [ "$r" -lt "$regions" ]; do
        rot=$r
        [ "$r" -lt "$half" ] || rot=$((r + regions))
        verify_region "$d" "$r" "$rot" >/tmp/v3.$d.$r &
        r=$((r + 1))
    done
done
wait
cat /tmp/v3.*
end=$(cut -d' ' -f1 /proc/uptime)
results=$(cat /tmp/v2.* /tmp/v3.*)
checked=$(echo "$results" | grep -c ' ok \| MISMATCH ')
bad=$(echo "$results" | grep -c MISMATCH)
written=$(((regions + regions - half) * reg * 2))
read_mb=$(((half + regions) * reg * 2))
echo "@@L2 integrity checked=$checked mismatches=$bad written_mb=$written read_mb=$read_mb seconds=$(awk "BEGIN{print $end - $start}")"
grep -h . /tmp/err.* /tmp/rerr.* 2>/dev/null | grep -iv 'records\|bytes\|copied' | sed 's/^/@@L2 dd: /'
[ "$bad" = 0 ] && [ "$checked" = $(((half + regions) * 2)) ]
