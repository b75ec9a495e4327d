# ATAPI pass-through of a host optical drive: QEMU's ide-cd in L1 (with the first disc of
# cdrom-linux, tests/rig/cdrom/host-iso.sh) is an sg node of peripheral type 5; satavm passes
# it through as an ATAPI device. L2's sr0 shows the host drive's model, blkid and mount work,
# every file has the md5 of the recipe, and L2's read of the disc's first 2 MiB has the md5 of
# L1's own read of /dev/sr0; a WRITE(10) the guest sends through sg_raw is refused with
# ILLEGAL REQUEST and never reaches the host drive (satavm's trace of its SG_IO); --strict
# raises nothing.
# rig: host-cdrom
RIG_CDROM_RECIPE_ONLY=1 . /rig/scenarios/cdrom-linux.sh
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
sg=
for d in /sys/class/scsi_generic/sg*; do
    [ "$(cat "$d/device/type" 2>/dev/null)" = 5 ] && sg=/dev/$(basename "$d")
done
[ -n "$sg" ] || rig_fail "no CD/DVD drive in L1 (the rig adds QEMU's ide-cd for this scenario)"
rig_ok "host CD/DVD drive at $sg ($(cat /sys/class/scsi_generic/$(basename "$sg")/device/model))"
mkdir -p want
(cd want && cdrom_files_disc1 && find . -type f | sort | xargs md5sum) >want.md5
l1_md5=
if [ -b /dev/sr0 ]; then
    l1_md5=$(dd if=/dev/sr0 bs=2048 count=1024 2>/dev/null | md5sum | cut -d' ' -f1)
    rig_ok "L1 read /dev/sr0: $l1_md5"
    # The same timed read as L2's (tests/rig/l2/sr-read.sh), on L1's own sr0.
    total=0 i=0
    while [ "$i" -lt 16 ]; do
        echo 3 >/proc/sys/vm/drop_caches
        t0=$(cut -d' ' -f1 /proc/uptime)
        dd if=/dev/sr0 of=/dev/null bs=1M count=1 2>/dev/null || rig_fail "L1 cannot read /dev/sr0"
        t1=$(cut -d' ' -f1 /proc/uptime)
        total=$(awk -v t="$total" -v a="$t0" -v b="$t1" 'BEGIN { print t + b - a }')
        i=$((i + 1))
    done
    awk -v t="$total" 'BEGIN { printf "figure: L1 itself: 1 MiB read of sr0 %.1f ms (mean of 16, cold cache), %.1f MiB/s\n", t * 1000 / 16, 16 / t }'
fi

rig_run_l2 l2.out --cpus 1 --memory 256 --strict --cmdline "$(rig_l2_cmdline cdrom-passthrough)" \
    --disk "passthrough=$sg" --trace trace.json
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"
rig_expect l2.out 'ata1\.00: ATAPI: QEMU' "L2's libata identified an ATAPI device (the host's INQUIRY)"
rig_expect l2.out '^@@L2 model=QEMU DVD-ROM$' "sr0 shows the host drive's model"
rig_expect l2.out '^@@L2 blkid: .*TYPE="iso9660"' "blkid sees iso9660"
while read -r sum name; do
    rig_expect l2.out "^@@L2 disc1 md5 $sum +$name\$" "$name has the md5 L1 expects"
done <want.md5
if [ -n "$l1_md5" ]; then
    rig_expect l2.out "^@@L2 raw-md5=$l1_md5\$" "L2's read of the disc equals L1's /dev/sr0"
fi
tr -d '\r' <l2.out | sed -n 's/^@@L2 figure: /figure: /p'
rig_expect l2.out '^@@L2 figure: pass-through' "L2 timed its 1 MiB reads of sr0"
rig_expect l2.out '^@@L2 write10 rc=[1-9].*(Illegal Request|ILLEGAL REQUEST)' "the guest's WRITE(10) was refused with ILLEGAL REQUEST"
# Every SG_IO satavm sent to the host drive, for tests/rig.rs to parse (no WRITE(10) there).
grep '"sg_io"' trace.json | sed 's/^/json-sg_io: /'
rig_expect l2.out '^@@L2 END cdrom-passthrough rc=0' "L2 script succeeded"
if grep -q -- '--strict:' l2.out; then rig_fail "a --strict spec rule was raised"; fi
rig_ok "no --strict rule raised"
echo "PASS"
