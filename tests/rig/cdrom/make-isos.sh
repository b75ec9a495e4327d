#!/bin/bash
# Regenerates the two ISO 9660 images that tests/rig/scenarios/cdrom-linux.sh carries (gzip'd,
# base64, between its ISO1/ISO2 markers) with xorriso (Debian package xorriso), from the file
# recipe in that scenario (cdrom_files_disc1/2), which L1 uses again to know every file's md5.
#   tests/rig/cdrom/make-isos.sh            rewrite the blocks in the scenario
set -eu
here=$(cd "$(dirname "$0")" && pwd)
scenario=$here/../scenarios/cdrom-linux.sh
command -v xorriso >/dev/null || { echo "needs xorriso (apt-get install xorriso)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=../scenarios/cdrom-linux.sh
RIG_CDROM_RECIPE_ONLY=1 . "$scenario"
for n in 1 2; do
    mkdir -p "$work/d$n"
    (cd "$work/d$n" && "cdrom_files_disc$n")
    xorriso -as mkisofs -quiet -R -J -V "SATAVM_DISC$n" -o "$work/disc$n.iso" "$work/d$n"
    gzip -9n <"$work/disc$n.iso" | base64 -w 76 >"$work/disc$n.b64"
done
python3 - "$scenario" "$work/disc1.b64" "$work/disc2.b64" <<'PY'
import re, sys
path, one, two = sys.argv[1:]
s = open(path).read()
for tag, f in (("ISO1", one), ("ISO2", two)):
    body = open(f).read()
    s = re.sub(r"(<<'%s'\n)(?:.*?\n)??(%s\n)" % (tag, tag), lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), s, count=1, flags=re.S)
open(path, "w").write(s)
PY
echo "rewrote the images in $scenario"
