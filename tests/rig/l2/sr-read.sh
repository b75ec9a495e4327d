# Sourced by the L2 sides of cdrom-linux and cdrom-passthrough (not a scenario of its own).
# sr_read_figure WHAT: 16 times, drop the page cache and read the first 1 MiB of /dev/sr0
# (one 1 MiB read); prints "@@L2 figure: WHAT: ..." with the mean time of one read.
sr_read_figure() {
    _total=0 _i=0
    while [ "$_i" -lt 16 ]; do
        echo 3 >/proc/sys/vm/drop_caches
        _t0=$(cut -d' ' -f1 /proc/uptime)
        dd if=/dev/sr0 of=/dev/null bs=1M count=1 2>/dev/null || return 1
        _t1=$(cut -d' ' -f1 /proc/uptime)
        _total=$(awk -v t="$_total" -v a="$_t0" -v b="$_t1" 'BEGIN { print t + b - a }')
        _i=$((_i + 1))
    done
    awk -v t="$_total" -v w="$1" 'BEGIN { printf "@@L2 figure: %s: 1 MiB read of sr0 %.1f ms (mean of 16, cold cache), %.1f MiB/s\n", w, t * 1000 / 16, 16 / t }'
}
