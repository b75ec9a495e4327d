# The built-in self-test firmware with a disk and an ATAPI CD/DVD drive: the disk gets the
# usual checks, the ATAPI port (PxSIG EB140101h) IDENTIFY PACKET DEVICE and one READ(10) over
# PACKET DMA of block 16, where the test image has an ISO 9660 primary volume descriptor.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
truncate -s 64M disk.img
# 32 blocks of 2048 bytes; block 16 starts with type 1 and "CD001" (ISO 9660 8.4).
dd if=/dev/zero of=disc.iso bs=2048 count=32 2>/dev/null
printf '\001CD001\001' | dd of=disc.iso bs=2048 seek=16 conv=notrunc 2>/dev/null
"$SATAVM" --strict --disk "path=$RIG_SCRATCH/disk.img" \
    --disk "cdrom=$RIG_SCRATCH/disc.iso,model=SATAVM-SELFTEST-CD" </dev/null >out 2>&1
rc=$?
rig_show out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_expect out '^PASS port1 start: .*PxSIG=0xeb140101' "the ATAPI port's signature"
rig_expect out '^PASS port1 identify-packet: model="SATAVM-SELFTEST-CD"' "IDENTIFY PACKET DEVICE"
rig_expect out '^PASS port1 atapi-read10-dma: .*ISO 9660 primary volume descriptor' \
    "READ(10) over PACKET DMA read the volume descriptor"
rig_expect out '^PASS port0 ncq-32' "the disk's checks still run"
rig_expect out '^satavm-selftest: RESULT PASS \(15 checks\)' "self-test verdict PASS"
if grep -q '^FAIL' out; then rig_fail "a FAIL line in the report"; fi
echo "PASS"
