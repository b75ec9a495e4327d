#!/bin/sh
# host-iso.sh OUT: write the first disc that tests/rig/scenarios/cdrom-linux.sh carries to
# OUT (for QEMU's ide-cd in L1: the host optical drive of the cdrom-passthrough scenario).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sed -n "/<<'ISO1'\$/,/^ISO1\$/p" "$here/../scenarios/cdrom-linux.sh" | sed '1d;$d' |
    base64 -d | gunzip >"$1"
