# The benchmark's L1 side (run by scripts/bench through `scripts/rig run` with
# RIG_SCENARIO_DIR=tests/rig/bench; not one of the test scenarios). One L1 boot, the same fio
# jobs against each target, one after the other:
#   l1          L1 itself on /dev/sda: the drive (QEMU's AHCI under TCG), the limit;
#   pt          satavm passing that drive through (--disk passthrough=/dev/sg0: the sg
#               engine, the sg driver's asynchronous interface);
#   pt-threads  the same through /dev/sda with engine=threads (blocking block-layer SG_IO on
#               worker threads, guest pages mapped without a copy);
#   image       satavm with an emulated drive over an image file on L1's tmpfs (io_uring);
#   image-threads   the same with engine=threads;
#   image-mapped, pt-mapped   image and pt with --registers mapped (register reads from a
#               read-only memslot, no exit; no doorbells) against the default trapped registers;
#   qemu        QEMU (-accel kvm) in L1 with its own AHCI over the same image file;
#   qemu-vblk   QEMU virtio-blk over the same image file;
#   qemu-ahci-pt    QEMU's AHCI over L1's /dev/sda (cache=none, aio=native);
#   qemu-scsi-block QEMU virtio-scsi + scsi-block over /dev/sda (SCSI-level pass-through).
# bench.targets=a,b,... and bench.jobs=a,b,... in RIG_L2_APPEND pick a subset.
# Prints "@@BENCH ..." lines that scripts/bench turns into a table and JSON:
#   @@BENCH fio TARGET JOB <fio terse v3 line>
#   @@BENCH kvm TARGET JOB exits=.. io_exits=.. mmio_exits=.. halt_exits=.. (KVM debugfs,
#          this VM's counters just around the fio job)
#   @@BENCH mem TARGET JOB vmrss=.. vmhwm=.. rssanon=.. rssfile=.. guest_size=.. guest_rss=..
#          (kB, read as the job ends; guest_* = the largest mapping, guest RAM)
#   @@BENCH boot TARGET wall=SECS l2=SECS (VMM start to L2 userspace on L1's clock; L2's uptime)
#   @@BENCH vmm-exits TARGET <satavm's own exit summary line>
#   @@BENCH cpu TARGET JOB user=.. nice=.. system=.. idle=.. iowait=.. irq=.. softirq=.. guest=..
#          (L1's /proc/stat CPU time just around the job, USER_HZ ticks; user includes guest,
#          the time L1's CPU ran L2)
#   @@BENCH threads TARGET JOB NAME=TICKS... (the VMM's threads' user+system CPU time over the
#          job, summed by thread name)
. "$RIG_LIB"

secs=8
targets=l1,pt,pt-mapped,pt-threads,image,image-mapped,image-threads,qemu,qemu-vblk,qemu-ahci-pt,qemu-scsi-block
jobs=randread-qd1,randread-qd32,randwrite-qd32,seqread-1m,seqwrite-1m
for arg in $RIG_L2_APPEND; do
    case "$arg" in
    bench.secs=*) secs=${arg#bench.secs=} ;;
    bench.targets=*) targets=${arg#bench.targets=} ;;
    bench.jobs=*) jobs=${arg#bench.jobs=} ;;
    esac
done
JOBS=
for job in randread-qd1:randread:4k:1 randread-qd32:randread:4k:32 randwrite-qd32:randwrite:4k:32 \
    seqread-1m:read:1M:4 seqwrite-1m:write:1M:4; do
    case ",$jobs," in *",${job%%:*},"*) JOBS="$JOBS $job" ;; esac
done
# wanted TARGET: the target is in bench.targets.
wanted() { case ",$targets," in *",$1,"*) return 0 ;; esac; return 1; }
MEM=1024
CR=$(printf '\r')

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }

mkdir -p /sys/kernel/debug
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -d /sys/kernel/debug/kvm ] || rig_fail "no /sys/kernel/debug/kvm in L1"
echo "L1: $(nproc) CPU(s), $(sed -n 's/^MemTotal: *//p' /proc/meminfo) RAM, fio jobs of $secs s"

# cpu_ticks: L1's CPU time so far (/proc/stat), as key=ticks.
cpu_ticks() {
    head -n 1 /proc/stat | awk '{ printf "user=%d nice=%d system=%d idle=%d iowait=%d irq=%d softirq=%d guest=%d", $2, $3, $4, $5, $6, $7, $8, $10 }'
}

# thread_ticks PID: user+system ticks of each of PID's threads, summed by name (NAME=TICKS).
thread_ticks() {
    for t in /proc/"$1"/task/*/stat; do
        # The name is in parentheses and may hold spaces: fields after the last ')'.
        sed 's/^[0-9]* (\(.*\)) /\1\t/' "$t" 2>/dev/null
    done | awk -F'\t' '{ split($2, f, " "); n = $1; gsub(/[^A-Za-z0-9_.:-]/, "_", n); t[n] += f[12] + f[13] }
        END { for (n in t) printf "%s=%d ", n, t[n] }'
}

# ticks_diff "BEFORE" "AFTER": AFTER - BEFORE for each NAME=TICKS of AFTER (new names: all).
ticks_diff() {
    echo "$1 | $2" | awk '{
        side = 0
        for (i = 1; i <= NF; i++) {
            if ($i == "|") { side = 1; continue }
            split($i, kv, "=")
            if (side == 0) { before[kv[1]] = kv[2] } else { printf "%s=%d ", kv[1], kv[2] - before[kv[1]] }
        }
    }'
}

# (a) L1 directly on the drive.
wanted l1 && for job in $JOBS; do
    IFS=: read -r name rw bs qd <<JOB
$job
JOB
    cpu_before=$(cpu_ticks)
    line=$(fio --name="$name" --filename="$RIG_DRIVE" --direct=1 --ioengine=libaio --offset=0 \
        --size=128M --rw="$rw" --bs="$bs" --iodepth="$qd" --runtime="$secs" --time_based \
        --minimal 2>&1) || rig_fail "fio $name on $RIG_DRIVE: $line"
    echo "@@BENCH cpu l1 $name $(ticks_diff "$cpu_before" "$(cpu_ticks)")"
    echo "@@BENCH fio l1 $name $line"
done

# kvm_counters PID: this VM's exit counters from KVM's debugfs (a directory PID-FD per VM).
kvm_counters() {
    for d in /sys/kernel/debug/kvm/"$1"-*; do
        [ -d "$d" ] || continue
        echo "exits=$(cat "$d/exits") io_exits=$(cat "$d/io_exits") mmio_exits=$(cat "$d/mmio_exits")" \
            "halt_exits=$(cat "$d/halt_exits")"
        return
    done
    echo "exits=0 io_exits=0 mmio_exits=0 halt_exits=0"
}

# counters_diff "BEFORE" "AFTER": AFTER - BEFORE, key by key.
counters_diff() {
    echo "$1 $2" | awk '{
        n = NF / 2
        for (i = 1; i <= n; i++) { split($i, a, "="); split($(i + n), b, "="); printf "%s=%d ", a[1], b[2] - a[2] }
    }'
}

# mem_counters PID: resident memory of the VMM, and of its largest mapping (guest RAM).
mem_counters() {
    s=/proc/$1/status
    echo "vmrss=$(awk '/^VmRSS:/ { print $2 }' "$s") vmhwm=$(awk '/^VmHWM:/ { print $2 }' "$s")" \
        "rssanon=$(awk '/^RssAnon:/ { print $2 }' "$s") rssfile=$(awk '/^RssFile:/ { print $2 }' "$s")" \
        "$(awk '/^[0-9a-f]+-[0-9a-f]+ / { cur = "" } $1 == "Size:" { size = $2 } $1 == "Rss:" {
              if (size > best) { best = size; rss = $2 } }
              END { printf "guest_size=%d guest_rss=%d", best, rss }' "/proc/$1/smaps")"
}

# run_vmm TARGET OUT COMMAND...: run a VMM that boots the L2 kernel with the bench L2 script;
# take KVM's counters around each fio job and the VMM's memory as each job ends.
run_vmm() {
    target=$1 out=$2
    shift 2
    fifo=$RIG_SCRATCH/.stdin.$target
    rm -f "$fifo" "$out" "$RIG_SCRATCH/pid.$target"
    mkfifo "$fifo"
    exec 8<>"$fifo"
    t0=$(uptime_s)
    asked=
    (sh -c 'echo $$ >"$0"; exec "$@"' "$RIG_SCRATCH/pid.$target" "$@" <"$fifo" 2>&1) |
        while IFS= read -r line; do
            line=${line%"$CR"}
            echo "$line" >>"$out"
            case "$line" in
            *"rig-l2: userspace reached at "*)
                l2=${line##*reached at }
                echo "@@BENCH boot $target wall=$(since "$t0") l2=${l2%% *}"
                ;;
            "@@FIO-START "*)
                job=${line#@@FIO-START }
                pid=$(cat "$RIG_SCRATCH/pid.$target")
                before=$(kvm_counters "$pid")
                cpu_before=$(cpu_ticks)
                threads_before=$(thread_ticks "$pid")
                # satavm prints its per-port counters on SIGUSR1: read them around the job. The
                # lines come back in the order asked for, not always before the next marker:
                # each is matched with the oldest request still open.
                case "$target" in pt* | image*) asked="$asked $job:start"; kill -USR1 "$pid" ;; esac
                ;;
            "@@FIO-END "*)
                job=${line#@@FIO-END }
                after=$(kvm_counters "$pid")
                mem=$(mem_counters "$pid")
                cpu_after=$(cpu_ticks)
                threads_after=$(thread_ticks "$pid")
                case "$target" in pt* | image*) asked="$asked $job:end"; kill -USR1 "$pid" ;; esac
                echo "@@BENCH kvm $target $job $(counters_diff "$before" "$after")"
                echo "@@BENCH mem $target $job $mem"
                echo "@@BENCH cpu $target $job $(ticks_diff "$cpu_before" "$cpu_after")"
                echo "@@BENCH threads $target $job $(ticks_diff "$threads_before" "$threads_after")"
                echo "@@BENCH nthreads $target $job count=$(ls /proc/"$pid"/task 2>/dev/null | wc -l)"
                ;;
            "satavm: port 0: "*)
                set -- $asked
                if [ $# -gt 0 ]; then
                    echo "@@BENCH vmmstats $target ${1%:*} ${1#*:} ${line#satavm: port 0: }"
                    shift
                    asked="$*"
                fi
                ;;
            "@@FIO "*)
                echo "@@BENCH fio $target ${line#@@FIO }"
                ;;
            "satavm: vCPU exits"*)
                echo "@@BENCH vmm-exits $target ${line#satavm: }"
                ;;
            esac
        done
    exec 8>&-
    rm -f "$fifo"
    rig_show "$out"
    grep -q '^@@L2 END bench rc=0' "$out" || rig_fail "$target: L2's bench script did not finish"
    rig_ok "$target: done"
}

cmdline=$(rig_l2_cmdline bench)
img=$RIG_SCRATCH/disk.img
qemu_l1() {
    echo qemu-system-x86_64 -L /usr/share/seabios -L /usr/share/qemu -accel kvm -cpu host \
        -nodefaults -display none -no-reboot -monitor none -serial stdio -smp 1 -m "$MEM" \
        -kernel "$L2_KERNEL" -initrd "$L2_INITRD"
}

# (b) satavm passing the drive through: the sg engine, and /dev/sda with engine=threads.
wanted pt && run_vmm pt pt.out "$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" \
    --cpus 1 --memory "$MEM" --cmdline "$cmdline" --disk "passthrough=$RIG_SG"
wanted pt-mapped && run_vmm pt-mapped pt-mapped.out "$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" \
    --cpus 1 --memory "$MEM" --cmdline "$cmdline" --disk "passthrough=$RIG_SG" --registers mapped
wanted pt-threads && run_vmm pt-threads pt-threads.out "$SATAVM" --kernel "$L2_KERNEL" \
    --initramfs "$L2_INITRD" --cpus 1 --memory "$MEM" --cmdline "$cmdline" \
    --disk "passthrough=$RIG_DRIVE,engine=threads"

# (c) satavm over an image file on tmpfs (written out: no holes).
dd if=/dev/zero of="$img" bs=1M count=256 2>/dev/null || rig_fail "cannot write $img"
wanted image && run_vmm image image.out "$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" \
    --cpus 1 --memory "$MEM" --cmdline "$cmdline" --disk "path=$img"
wanted image-mapped && run_vmm image-mapped image-mapped.out "$SATAVM" --kernel "$L2_KERNEL" \
    --initramfs "$L2_INITRD" --cpus 1 --memory "$MEM" --cmdline "$cmdline" --disk "path=$img" \
    --registers mapped
wanted image-threads && run_vmm image-threads image-threads.out "$SATAVM" --kernel "$L2_KERNEL" \
    --initramfs "$L2_INITRD" --cpus 1 --memory "$MEM" --cmdline "$cmdline" \
    --disk "path=$img,engine=threads"

# (d) QEMU over the same image (tmpfs: the default cache mode, no O_DIRECT): its AHCI, and
# virtio-blk (what a user picks for a fast disk; the guest sees /dev/vda).
# shellcheck disable=SC2046
wanted qemu && run_vmm qemu qemu.out $(qemu_l1) -append "$cmdline" \
    -device ahci,id=ahci -drive "if=none,id=d,file=$img,format=raw" -device ide-hd,drive=d,bus=ahci.0
# shellcheck disable=SC2046
wanted qemu-vblk && run_vmm qemu-vblk qemu-vblk.out $(qemu_l1) -append "$cmdline bench.dev=vda" \
    -drive "if=none,id=d,file=$img,format=raw" -device virtio-blk-pci,drive=d

# (e) QEMU over L1's drive: its AHCI with an ide-hd on /dev/sda, and virtio-scsi with
# scsi-block (SCSI commands passed through to the host's sd device).
# shellcheck disable=SC2046
wanted qemu-ahci-pt && run_vmm qemu-ahci-pt qemu-ahci-pt.out $(qemu_l1) -append "$cmdline" \
    -device ahci,id=ahci -drive "if=none,id=d,file=$RIG_DRIVE,format=raw,cache=none,aio=native" \
    -device ide-hd,drive=d,bus=ahci.0
# shellcheck disable=SC2046
wanted qemu-scsi-block && run_vmm qemu-scsi-block qemu-scsi-block.out $(qemu_l1) \
    -append "$cmdline" -device virtio-scsi-pci,id=scsi \
    -drive "if=none,id=d,file=$RIG_DRIVE,format=raw,cache=none,aio=native" \
    -device scsi-block,drive=d,bus=scsi.0
echo "PASS"
