# L2 side of l2-boot: report the CPUs and kernel this guest sees.
echo "@@L2 nproc=$(nproc)"
echo "@@L2 cpuinfo-processors=$(grep -c '^processor' /proc/cpuinfo)"
echo "@@L2 uname-r=$(uname -r)"
