# Sourced by the L2 sides of hotplug-linux and hotplug-passthrough (not a scenario of its own).

# wait_reader PID: the reader of the pulled drive must end by itself (no hang): its dd fails
# once the drive is gone.
wait_reader() {
    _i=0
    while kill -0 "$1" 2>/dev/null; do
        _i=$((_i + 1))
        [ "$_i" -le 600 ] || { echo "@@L2 reader hung"; exit 1; }
        sleep 0.1
    done
    wait "$1"
}

# check_new_disk MODEL WANT: wait for a new sd device whose SCSI model starts with MODEL
# (any model if empty), print it, and check that its first MiB has md5 WANT; then L2's
# libata and sd messages. Fails unless the md5 matches.
check_new_disk() {
    echo "@@L2 waiting-for-new"
    _new= _i=0
    while [ -z "$_new" ]; do
        for _d in /sys/block/sd*; do
            [ -e "$_d/device/model" ] || continue
            case "$(cat "$_d/device/model")" in "$1"*) _new=${_d##*/} ;; esac
        done
        _i=$((_i + 1))
        [ "$_i" -le 600 ] || { echo "@@L2 no new disk"; ls /sys/block; exit 1; }
        [ -n "$_new" ] || sleep 0.1
    done
    echo "@@L2 new-disk=$_new model=$(cat "/sys/block/$_new/device/model") uptime=$(cut -d' ' -f1 /proc/uptime)"
    _got=$(dd if="/dev/$_new" bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ "$_got" = "$2" ]; then
        echo "@@L2 new-read=ok $_got"
    else
        echo "@@L2 new-read=bad got $_got want $2"
    fi
    dmesg | grep -E 'ata[12]|sd[a-z]|I/O error' | tail -60 | sed 's/^/@@L2 dmesg: /'
    [ "$_got" = "$2" ]
}
