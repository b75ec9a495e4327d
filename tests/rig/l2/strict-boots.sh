# L2 side of strict-boots: the load of the --strict flake (issue 16): 8 parallel direct-I/O
# dd readers and 8 writers, so that libahci keeps issuing NCQ commands (PxSACT then PxCI, one
# bit each) through the doorbells while others complete. (hdparm -t, also in the report,
# adds 3 s of sequential reads per boot, which 20 boots cannot afford in one scenario.)
set -u
j=0
while [ $j -lt 8 ]; do
    dd if=/dev/zero of=/dev/sda bs=4k count=128 seek=$((8192 + j * 512)) oflag=direct 2>/dev/null &
    dd if=/dev/sda of=/dev/null bs=4k count=128 skip=$((j * 512)) iflag=direct 2>/dev/null &
    j=$((j + 1))
done
wait
echo "@@L2 load=done"
