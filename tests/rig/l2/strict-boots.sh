# L2 side of strict-boots: the load of the --strict flake (issue 16): hdparm -t beside 8
# parallel direct-I/O dd readers and writers, with libahci issuing NCQ commands through the
# doorbells.
set -u
j=0
while [ $j -lt 8 ]; do
    dd if=/dev/zero of=/dev/sda bs=4k count=128 seek=$((8192 + j * 512)) oflag=direct 2>/dev/null &
    dd if=/dev/sda of=/dev/null bs=4k count=128 skip=$((j * 512)) iflag=direct 2>/dev/null &
    j=$((j + 1))
done
hdparm -t /dev/sda >/dev/null 2>&1
wait
echo "@@L2 load=done"
