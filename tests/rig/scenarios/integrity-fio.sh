# Data integrity under fio: L2 runs fio with verify on two satavm image disks at once (libaio,
# O_DIRECT, iodepth 32 = NCQ, random writes of 512 B to 1 MiB, each block read back and checked;
# tests/rig/l2/integrity-fio.sh), then reads every block of the last pass back once more.
# Zero verify errors on both disks, several GiB moved, NCQ used on both ports.
# rig: l2-fio
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
[ -n "$L2_INITRD_FIO" ] && [ -f "$L2_INITRD_FIO" ] ||
    rig_fail "no L2 initramfs with fio (scripts/rig builds it for scenarios marked '# rig: l2-fio')"
L2_INITRD=$L2_INITRD_FIO
# Per disk: passes x (size written + size read) + size read again at the end.
size=${RIG_FIO_SIZE_MB:-256}
passes=${RIG_FIO_PASSES:-3}
# The images live on L1's tmpfs (RAM), beside what earlier scenarios left there.
df -m /tmp | sed 's/^/L1 tmpfs: /'
truncate -s "${size}M" a.img b.img
t0=$(cut -d' ' -f1 /proc/uptime)
# L1's free memory while L2 runs (the images and L2's RAM are both L1's RAM), every 5 s.
(while sleep 5; do sed -n 's/^MemAvailable: *\([0-9]*\) kB/\1/p' /proc/meminfo; done >memavail) &
sampler=$!
rig_run_l2 l2.out --memory 512 \
    --cmdline "$(rig_l2_cmdline integrity-fio) rig.fio_size_mb=$size rig.fio_passes=$passes" \
    --disk path=a.img,model=FIO-A --disk path=b.img,model=FIO-B
rc=$?
kill "$sampler"
low=$(sort -n memavail | head -n 1)
echo "satavm ran for $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }') s;" \
    "L1's MemAvailable meanwhile: lowest ${low:+$((low / 1024)) MiB}"
rm -f a.img b.img
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"
out=$(tr -d '\r' <l2.out)
# The disks probe in parallel in L2: which of sda/sdb is which image, by model.
for m in FIO-A FIO-B; do
    rig_expect l2.out "^@@L2 sd[ab] model=$m *queue_depth=(3[0-2]|[12][0-9]|[2-9]) " \
        "L2 sees disk $m with NCQ on (queue depth > 1)"
done
devs=$(echo "$out" | sed -n 's/^@@L2 \(sd[ab]\) model=FIO-.*/\1/p')
[ "$(echo $devs)" = "sda sdb" ] || [ "$(echo $devs)" = "sdb sda" ] || rig_fail "L2's disks: '$devs'"
total_w=0
total_r=0
for d in $devs; do
    echo "$out" | grep -q "^@@L2 fio $d rc=0$" || rig_fail "fio on $d failed: $(echo "$out" | grep "^@@L2 fio $d rc=")"
    rig_ok "fio exited 0 on $d"
    echo "$out" | grep -q "^@@L2 fio-stderr $d:" && rig_fail "fio on $d complained (see l2.out above)"
    jobs=$(echo "$out" | grep -c "^@@L2 fio $d job=")
    [ "$jobs" = $((passes + 1)) ] || rig_fail "fio on $d reported $jobs jobs, not $((passes + 1))"
    bad=$(echo "$out" | grep "^@@L2 fio $d job=" | grep -vc ' error=0 ')
    [ "$bad" = 0 ] || rig_fail "fio on $d: $bad job(s) with an error (84 = a verify mismatch)"
    # MiB written by the passes; MiB read by the passes' verifies and by the final verify (its
    # writes are replayed to know what to expect, not done).
    set -- $(echo "$out" | awk -v d="$d" '
        $1 == "@@L2" && $2 == "fio" && $3 == d && $4 ~ /^job=/ {
            for (i = 5; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            r += v["read_mib"]; t += v["runtime_ms"]
            if ($4 == "job=final") final = v["read_mib"]; else w += v["write_mib"]
        }
        END { printf "%d %d %d %d", w, r, final, t }')
    [ "$1" -ge $((passes * size)) ] || rig_fail "$d: only $1 MiB written, not $((passes * size))"
    [ "$3" -ge "$size" ] || rig_fail "$d: the final verify read only $3 MiB, not $size"
    [ "$2" -ge $(((passes + 1) * size)) ] || rig_fail "$d: only $2 MiB read and verified"
    rig_ok "$d: zero verify errors; $1 MiB written, $2 MiB read and verified ($3 MiB in the final read-back), fio jobs ${4} ms"
    total_w=$((total_w + $1))
    total_r=$((total_r + $2))
done
rig_ok "moved $((total_w + total_r)) MiB in total on both disks ($total_w MiB written, $total_r MiB read)"
rig_expect l2.out '^@@L2 END integrity-fio rc=0' "L2 script succeeded"
for p in 0 1; do
    rig_expect l2.out "port $p: [0-9]+ commands.*NCQ peak depth ([2-9]|[1-9][0-9]), 0 errors" \
        "port $p ran queued commands concurrently, without errors"
done
echo "$out" | grep -E '^@@L2 (sd[ab] |fio )|NCQ|port [01]:' | sed 's/^/summary: /'
echo "PASS"
