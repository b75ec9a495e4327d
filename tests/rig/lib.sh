# Helpers for rig scenarios (tests/rig/scenarios/*.sh), sourced as `. "$RIG_LIB"`.
# Runs in L1's busybox sh. Environment set by L1's /init:
#   SATAVM, L2_KERNEL, L2_INITRD, RIG_DRIVE (/dev/sda), RIG_SG (/dev/sg0),
#   RIG_MODEL, RIG_SERIAL (what QEMU's ide-hd was given), RIG_FAULTY_DRIVE,
#   RIG_FAULTY_SG, RIG_FAULTY_SECTOR (the failing drive), RIG_SLOW_DRIVE, RIG_SLOW_SG,
#   RIG_SLOW_BPS, RIG_SLOW_BURST (the throttled drive), RIG_VANISH_DRIVE, RIG_VANISH_SG
#   (the drive whose controller "@@RIG UNPLUG ahci-vanish" unplugs), RIG_SCRATCH (tmpfs,
#   the current directory), RIG_SCENARIO (this scenario's name), RIG_L2_APPEND, and
#   L2_INITRD_FIO: L2_INITRD plus fio and its libraries (about 40 MB), set only in boots
#   that run a scenario with a line `# rig: l2-fio` (empty otherwise); such a scenario sets
#   L2_INITRD=$L2_INITRD_FIO before rig_run_l2 and gives L2 --memory 512.

# rig_fail MSG: report a failure and end the scenario.
rig_fail() {
    echo "FAIL: $*"
    exit 1
}

# rig_ok MSG: report one passed check.
rig_ok() {
    echo "ok: $*"
}

# rig_expect FILE PATTERN WHAT: FILE must contain a line matching the extended regexp PATTERN.
rig_expect() {
    if tr -d '\r' <"$1" | grep -Eq -- "$2"; then
        rig_ok "$3"
    else
        rig_fail "$3 (no line matching '$2' in $1)"
    fi
}

# rig_l2_cmdline NAME: the L2 kernel command line that runs tests/rig/l2/NAME.sh in L2.
rig_l2_cmdline() {
    echo "console=ttyS0 panic=-1 quiet rig.scenario=$1 $RIG_L2_APPEND"
}

# rig_wait_for FILE PATTERN SECS [PID]: wait until FILE has a line matching the extended
# regexp PATTERN. Returns 1 after SECS seconds, or as soon as process PID (if given) is gone.
rig_wait_for() {
    _i=0
    while ! tr -d '\r' <"$1" 2>/dev/null | grep -Eq -- "$2"; do
        _i=$((_i + 1))
        [ "$_i" -le $(($3 * 10)) ] || return 1
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
}

# rig_show FILE: print FILE framed, for the scenario's log.
rig_show() {
    echo "----- $1"
    tr -d '\r' <"$1"
    echo "----- end of $1"
}

# rig_run_l2 OUT [SATAVM ARGS...]: boot the L2 kernel + initramfs with satavm, the
# scenario's L2 script selected by --cmdline "$(rig_l2_cmdline NAME)" in the args.
# satavm's stdin is a fifo held open with no data (like an idle terminal),
# its stdout+stderr go to OUT. Prints OUT, returns satavm's exit status.
rig_run_l2() {
    _out=$1
    shift
    _fifo="$RIG_SCRATCH/.stdin.$$"
    rm -f "$_fifo"
    mkfifo "$_fifo"
    exec 8<>"$_fifo"
    "$SATAVM" --kernel "$L2_KERNEL" --initramfs "$L2_INITRD" "$@" <"$_fifo" >"$_out" 2>&1
    _rc=$?
    exec 8>&-
    rm -f "$_fifo"
    rig_show "$_out"
    echo "satavm exit status: $_rc"
    return "$_rc"
}
