# L2 side of integrity-kill: write numbered 64 KiB blocks to /dev/sda in batches, each batch
# with O_DIRECT and ended by fsync (the kernel sends FLUSH CACHE EXT); after each batch say
# `@@L2 flushed N` (blocks 0..N-1 are durable). L1 kills satavm with SIGKILL meanwhile.
# Block K is the 64-byte line "integrity-kill block K" (space-padded, newline) 1024 times.
set -u
batch=8
max=${1:-1984}
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    rig.kill_blocks=*) max=${arg#rig.kill_blocks=} ;;
    esac
done
echo "@@L2 writing up to $max blocks, $batch per flush"
k=0
while [ "$k" -lt "$max" ]; do
    : >/tmp/batch
    i=0
    while [ "$i" -lt "$batch" ]; do
        printf '%-63s\n' "integrity-kill block $((k + i))" >/tmp/l
        cat /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l /tmp/l >/tmp/s
        cat /tmp/s /tmp/s /tmp/s /tmp/s /tmp/s /tmp/s /tmp/s /tmp/s >/tmp/p
        cat /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p \
            /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p /tmp/p >>/tmp/batch
        i=$((i + 1))
    done
    dd if=/tmp/batch of=/dev/sda bs=64k seek="$k" oflag=direct conv=notrunc,fsync 2>/tmp/err ||
        { echo "@@L2 WRITE-ERROR at block $k: $(cat /tmp/err)"; exit 1; }
    k=$((k + batch))
    echo "@@L2 flushed $k"
done
echo "@@L2 all $k blocks written"
