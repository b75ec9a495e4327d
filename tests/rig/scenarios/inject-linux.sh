# Fault injection under Linux: satavm's emulated drive fails reads of one LBA with UNC and
# drops off the link once (when one other LBA is read). libata's error handling runs (NCQ
# error log, link reset), the bad read fails, everything else succeeds, the guest keeps
# running and satavm exits 0 (under --strict: libata breaks no AHCI rule while recovering);
# the JSON trace shows the exchange.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"

img=$RIG_SCRATCH/disk.img
truncate -s 256M "$img"
bad=123456
link=200000
trace=$RIG_SCRATCH/trace.jsonl
rig_run_l2 l2.out --memory 512 \
    --cmdline "$(rig_l2_cmdline inject-linux) rig.bad_sector=$bad rig.link_sector=$link" \
    --disk "path=$img" --trace "$trace" --trace-human="$RIG_SCRATCH/trace.txt" --strict \
    --inject "port=0,op=read,lba=$bad,error=unc" \
    --inject "op=read,lba=$link,nth=1,link-down,for:500"
rc=$?
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "the guest kept running and satavm exited 0"

rig_expect l2.out '^@@L2 bad-read=failed' "the read of the bad LBA failed in L2"
rig_expect l2.out "I/O error, dev sda, sector $bad" "L2's kernel reports the I/O error at that sector"
rig_expect l2.out '@@L2 dmesg: .*ata1\.00: .*(UNC|media error)' "libata's error handling saw UNC"
rig_expect l2.out '^@@L2 neighbour-read=ok' "the sectors around it still read"
rig_expect l2.out '^@@L2 link-read=ok' "the read that dropped the link succeeded after recovery"
rig_expect l2.out '@@L2 dmesg: .*ata1: .*(PHY RDY changed|hard resetting link|SATA link up)' "libata reset the link"
rig_expect l2.out '^@@L2 later-io=ok' "later writes and reads succeed"
rig_expect l2.out '^@@L2 END inject-linux rc=0' "L2 script succeeded"
rig_expect l2.out 'port 0: .*errors.*1 link drops' "the exit summary counts the link drop"

[ -s "$trace" ] || rig_fail "no trace file"
rig_ok "trace: $(wc -l <"$trace") JSON lines"
rig_expect "$trace" "\"layer\":\"inject\",\"kind\":\"fire\",\"rule\":\"port=0,op=read,lba=$bad,error=unc\"" "trace: the UNC injection fired"
rig_expect "$trace" '"layer":"ata","kind":"done","op":"READ FPDMA QUEUED","status":81,"error":64,"ok":false' "trace: the NCQ read ended with ERR/UNC"
rig_expect "$trace" '"dir":"d2h","type":"SDB","i":true,"n":false,"status":81,"error":64' "trace: the Set Device Bits FIS carried ERR"
rig_expect "$trace" '"layer":"ata","kind":"cmd","op":"READ LOG (DMA )?EXT".*"lba":16' "trace: libata read the NCQ error log (10h)"
rig_expect "$trace" '"layer":"inject","kind":"ncq_log_read"' "trace: the injected error was reported in log 10h"
rig_expect "$trace" '"layer":"ahci","kind":"link","state":"lost","pxserr":66048' "trace: PhyRdy lost (DIAG.N, ERR.C)"
rig_expect "$trace" '"layer":"ahci","kind":"link","state":"restored"' "trace: the link came back"
rig_expect "$trace" '"layer":"ahci","kind":"reg_write","reg":"P0SCTL"' "trace: libata wrote PxSCTL (COMRESET)"
grep -c '"layer":"ahci","kind":"reg_' "$trace" | sed 's/^/register accesses traced: /'
# The text form of the last NCQ read (L2's read-back), for docs/trace-example.txt.
n=$(grep -n 'ata   cmd op="READ FPDMA QUEUED"' "$RIG_SCRATCH/trace.txt" | tail -1 | cut -d: -f1)
[ -n "$n" ] || rig_fail "no READ FPDMA QUEUED in the text trace"
echo "--- text trace around the last READ FPDMA QUEUED"
sed -n "$((n - 8)),$((n + 16))p" "$RIG_SCRATCH/trace.txt"
echo "---"
echo "PASS"
