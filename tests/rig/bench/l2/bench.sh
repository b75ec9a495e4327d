# L2 side of the benchmark (tests/rig/bench/bench.sh): the fio jobs on /dev/sda (bench.dev=vda
# for virtio-blk), each framed by
# @@FIO-START / @@FIO-END markers so that L1 can read KVM's exit counters just around it. The
# markers are short and fio's result line is printed only after @@FIO-END: every console byte
# is a port write (an exit), which should not count against the disk.
set -u
secs=8 dev=sda jobs=randread-qd1,randread-qd32,randwrite-qd32,seqread-1m,seqwrite-1m
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    bench.secs=*) secs=${arg#bench.secs=} ;;
    bench.dev=*) dev=${arg#bench.dev=} ;;
    bench.jobs=*) jobs=${arg#bench.jobs=} ;;
    esac
done
echo "@@L2 $dev queue_depth=$(cat /sys/block/$dev/device/queue_depth 2>/dev/null)" \
    "max_sectors_kb=$(cat /sys/block/$dev/queue/max_sectors_kb)"
# name rw bs iodepth (the same list as bench.sh's L1-direct run).
for job in randread-qd1:randread:4k:1 randread-qd32:randread:4k:32 randwrite-qd32:randwrite:4k:32 \
    seqread-1m:read:1M:4 seqwrite-1m:write:1M:4; do
    case ",$jobs," in *",${job%%:*},"*) ;; *) continue ;; esac
    IFS=: read -r name rw bs qd <<JOB
$job
JOB
    echo "@@FIO-START $name"
    sleep 1
    fio --name="$name" --filename="/dev/$dev" --direct=1 --ioengine=libaio --offset=0 --size=128M \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --runtime="$secs" --time_based --minimal \
        >/tmp/fio.out 2>/tmp/fio.err
    rc=$?
    echo "@@FIO-END $name"
    [ "$rc" = 0 ] || { echo "@@L2 fio $name failed rc=$rc"; cat /tmp/fio.err; }
    echo "@@FIO $name $(cat /tmp/fio.out)"
done
# L1 reads the VMM's counters when it sees the last @@FIO-END: stay up meanwhile.
sleep 2
