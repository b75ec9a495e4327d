# satavm boots the same kernel as an ELF vmlinux (not a bzImage) with 4 vCPUs; L2 sees all 4
# and powers off, and satavm exits 0.
. "$RIG_LIB"
[ -x "$SATAVM" ] || rig_fail "no satavm in this L1"
[ -f "$L2_VMLINUX" ] || rig_fail "no ELF vmlinux in this L1"
_fifo=$RIG_SCRATCH/stdin
mkfifo "$_fifo"
exec 8<>"$_fifo"
"$SATAVM" --kernel "$L2_VMLINUX" --initramfs "$L2_INITRD" --cpus 4 --memory 256 \
    --cmdline "$(rig_l2_cmdline l2-boot)" <"$_fifo" >l2.out 2>&1
rc=$?
rig_show l2.out
[ "$rc" = 0 ] || rig_fail "satavm exited with status $rc"
rig_ok "satavm exited 0"
rig_expect l2.out '^@@L2 nproc=4$' "L2 booted from the ELF vmlinux has 4 online CPUs"
rig_expect l2.out '^@@L2 END l2-boot rc=0' "L2's scenario script succeeded"
echo "PASS"
