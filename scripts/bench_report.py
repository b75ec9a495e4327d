#!/usr/bin/env python3
"""Turns the @@BENCH lines of a scripts/bench run into JSON and tables (see scripts/bench).

  bench_report.py parse LOG JSON SECS   the run's figures, ratios and target checks -> JSON
  bench_report.py table JSON            print one run
  bench_report.py spread JSON...        min / median / max of each ratio over several runs
"""

import json
import re
import statistics
import sys

TARGETS = ["l1", "pt", "pt-mapped", "pt-threads", "image", "image-mapped", "image-threads", "qemu",
           "qemu-vblk", "qemu-ahci-pt", "qemu-scsi-block"]
TARGET_NAMES = {
    "l1": "L1 direct (the drive)",
    "pt": "satavm pass-through",
    "pt-mapped": "satavm pt, mapped registers",
    "pt-threads": "satavm pt, SG_IO threads",
    "image": "satavm image",
    "image-mapped": "satavm image, mapped regs",
    "image-threads": "satavm image, threads",
    "qemu": "QEMU AHCI image",
    "qemu-vblk": "QEMU virtio-blk image",
    "qemu-ahci-pt": "QEMU AHCI on the drive",
    "qemu-scsi-block": "QEMU scsi-block drive",
}
# The ratios reported for every job: (name, numerator, denominator).
RATIOS = [
    ("pt/l1", "pt", "l1"),
    ("pt/image", "pt", "image"),
    ("pt/qemu-ahci-pt", "pt", "qemu-ahci-pt"),
    ("pt/qemu-scsi-block", "pt", "qemu-scsi-block"),
    ("pt-threads/pt", "pt-threads", "pt"),
    ("image-threads/image", "image-threads", "image"),
    ("image-mapped/image", "image-mapped", "image"),
    ("pt-mapped/pt", "pt-mapped", "pt"),
    ("image/qemu", "image", "qemu"),
    ("image/qemu-vblk", "image", "qemu-vblk"),
]
JOBS = ["randread-qd1", "randread-qd32", "randwrite-qd32", "seqread-1m", "seqwrite-1m"]
BLOCK = {"randread-qd1": 4096, "randread-qd32": 4096, "randwrite-qd32": 4096,
         "seqread-1m": 1 << 20, "seqwrite-1m": 1 << 20}

# (ratio name, job, metric, at least): the project's targets (issues 7 and 14).
CHECKS = [
    ("image/qemu", "randread-qd1", "iops", 1.5),
    ("image/qemu", "randread-qd32", "iops", 3.0),
    ("image/qemu", "seqread-1m", "mbps", 3.0),
    ("image/qemu", "seqwrite-1m", "mbps", 3.0),
    ("pt/l1", "randread-qd32", "iops", 0.25),
    ("pt/l1", "randwrite-qd32", "iops", 0.25),
    ("pt/l1", "seqread-1m", "mbps", 0.5),
    ("pt/l1", "seqwrite-1m", "mbps", 0.5),
] + [(r, job, m, want) for job, m in [("randread-qd1", "iops"), ("randread-qd32", "iops"),
                                      ("randwrite-qd32", "iops"), ("seqread-1m", "mbps"),
                                      ("seqwrite-1m", "mbps")]
     for r, want in [("pt/image", 0.8), ("pt/qemu-ahci-pt", 1.5), ("pt/qemu-scsi-block", 1.0)]
] + [("image/qemu-vblk", job, m, 1.0) for job, m in [("randread-qd32", "iops"),
                                                     ("randwrite-qd32", "iops"),
                                                     ("seqread-1m", "mbps"),
                                                     ("seqwrite-1m", "mbps")]]
# Threads of a satavm with one vCPU and a pass-through port: the vCPU and the event loop.
PT_THREADS = 2
MEMORY_LIMIT_KIB = 8 * 1024
# /proc/stat counts USER_HZ ticks: 100 per second on Linux.
TICK_MS = 10.0


def cpu_per_io(c, ios):
    """L1's CPU time over a job (from /proc/stat ticks) as ms per I/O command: running L2
    (guest), L1 user space other than L2 (user - guest: the VMM's threads, fio for l1), L1's
    kernel (system + irq + softirq: KVM's exit handling, the block layer, the drive's driver),
    idle (idle + iowait)."""
    g = lambda k: c.get(k, 0) if isinstance(c.get(k, 0), int) else 0
    parts = {
        "l2_guest": g("guest"),
        "l1_user": g("user") + g("nice") - g("guest"),
        "l1_kernel": g("system") + g("irq") + g("softirq"),
        "idle": g("idle") + g("iowait"),
    }
    return {k: round(v * TICK_MS / ios, 3) for k, v in parts.items()}


def kv(words):
    out = {}
    for w in words:
        if "=" in w:
            k, v = w.split("=", 1)
            try:
                out[k] = float(v) if "." in v else int(v)
            except ValueError:
                out[k] = v
    return out


def fio_terse(job, line):
    """fio --minimal (terse v3): read KiB/bw/iops at fields 6-8, write at 47-49 (1-based)."""
    f = line.split(";")
    if len(f) < 50 or f[0] != "3":
        raise ValueError(f"not a fio terse v3 line for {job}: {line[:80]}")
    read_kib, write_kib = int(f[5]), int(f[46])
    bw_kib = int(f[6]) + int(f[47])
    iops = float(f[7]) + float(f[48])
    ios = (read_kib + write_kib) * 1024 // BLOCK[job]
    return {"iops": round(iops, 1), "mbps": round(bw_kib * 1024 / 1e6, 2), "ios": ios,
            "error": int(f[4])}


def vmm_counters(line):
    """satavm's port line (the text after 'port 0: '): commands, and for the engine and the
    host side the counts that grow."""
    out = {}
    m = re.match(r"(\d+) commands", line)
    if m:
        out["commands"] = int(m.group(1))
    m = re.search(r"engine ([\w-]+): (\d+) requests, (\d+) system calls", line)
    if m:
        out["engine"] = m.group(1)
        out["requests"], out["syscalls"] = int(m.group(2)), int(m.group(3))
    m = re.search(r"host: (\d+) SG_IO commands.*?(\d+) direct I/O, (\d+) through the kernel", line)
    if m:
        out["sg_io"], out["direct_io"], out["indirect_io"] = map(int, m.groups())
    return out


def parse(log_path, json_path, secs):
    data = {"secs": secs, "log": log_path, "targets": {t: {"jobs": {}} for t in TARGETS}}
    with open(log_path, errors="replace") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n")
            if not line.startswith("@@BENCH "):
                continue
            words = line.split()
            kind, target = words[1], words[2]
            t = data["targets"].setdefault(target, {"jobs": {}})
            if kind == "fio":
                job = words[3]
                t["jobs"].setdefault(job, {}).update(fio_terse(job, line.split(" ", 4)[4]))
            elif kind in ("kvm", "mem", "cpu", "threads", "nthreads"):
                t["jobs"].setdefault(words[3], {})[kind] = kv(words[4:])
            elif kind == "vmmstats":
                job, phase = words[3], words[4]
                text = line.split(" ", 5)[5] if len(words) > 5 else ""
                t["jobs"].setdefault(job, {}).setdefault("vmm", {})[phase] = vmm_counters(text)
            elif kind == "boot":
                t["boot"] = kv(words[3:])
            elif kind == "vmm-exits":
                t["vmm_exits"] = " ".join(words[3:])
    # Per I/O command: KVM's exit counters around the job over fio's completed I/Os.
    for t in data["targets"].values():
        for j in t["jobs"].values():
            k, ios = j.get("kvm"), j.get("ios")
            if k and ios:
                j["per_io"] = {
                    "exits": round(k.get("exits", 0) / ios, 2),
                    "io_mmio_exits": round((k.get("io_exits", 0) + k.get("mmio_exits", 0)) / ios, 2),
                    "mmio_exits": round(k.get("mmio_exits", 0) / ios, 2),
                }
            c = j.get("cpu")
            if c and ios:
                j["cpu_ms_per_io"] = cpu_per_io(c, ios)
            th = j.get("threads")
            if th and ios:
                j["thread_ms_per_io"] = {n: round(v * TICK_MS / ios, 3) for n, v in th.items()
                                         if isinstance(v, int) and v > 0}
            v = j.get("vmm", {})
            a, b = v.get("start"), v.get("end")
            if a and b and b.get("commands", 0) > a.get("commands", 0):
                cmds = b["commands"] - a["commands"]
                per = {"engine": b.get("engine")}
                for k in ("requests", "syscalls", "sg_io", "direct_io", "indirect_io"):
                    if k in a and k in b:
                        per[k] = round((b[k] - a[k]) / cmds, 2)
                j["per_command"] = per
            m = j.get("mem")
            # Read as the VMM may already be gone (then the values are empty).
            if m and all(isinstance(m.get(k), int) for k in ("vmrss", "rssanon", "guest_rss")):
                m["beyond_guest_kib"] = m["vmrss"] - m["guest_rss"]
                m["anon_beyond_guest_kib"] = m["rssanon"] - m["guest_rss"]
    data["ratios"] = ratios(data)
    data["checks"] = checks(data)
    with open(json_path, "w") as fh:
        json.dump(data, fh, indent=1)
    print(f"bench: results in {json_path}")


def figure(data, target, job, metric):
    return data["targets"].get(target, {}).get("jobs", {}).get(job, {}).get(metric)


def ratio(data, a, b, job, metric):
    x, y = figure(data, a, job, metric), figure(data, b, job, metric)
    return round(x / y, 3) if x is not None and y else None


def ratios(data):
    out = {}
    for job in JOBS:
        metric = "mbps" if job.startswith("seq") else "iops"
        out[job] = {"metric": metric}
        for name, a, b in RATIOS:
            out[job][name] = ratio(data, a, b, job, metric)
    return out


def mem_beyond(data, target):
    jobs = data["targets"].get(target, {}).get("jobs", {}).values()
    vals = [j["mem"]["beyond_guest_kib"] for j in jobs if "beyond_guest_kib" in j.get("mem", {})]
    return max(vals) if vals else None


def checks(data):
    out = []
    for name, job, metric, want in CHECKS:
        got = data["ratios"][job][name]
        out.append({"what": f"{name} {job} {metric}", "want": f">= {want}", "got": got,
                    "met": got is not None and got >= want})
    for job in JOBS:
        s = figure(data, "image", job, "per_io")
        q = figure(data, "qemu", job, "per_io")
        if s and q:
            out.append({"what": f"exits/IO image < qemu {job}", "want": f"< {q['exits']}",
                        "got": s["exits"], "met": s["exits"] < q["exits"]})
    # Issue 15: exits per 4 KiB command (KVM debugfs, all exits) and L2's boot time.
    for target in ("image", "image-mapped"):
        for job, most in (("randread-qd1", 7.0), ("randread-qd32", 2.5), ("randwrite-qd32", 2.5)):
            s = figure(data, target, job, "per_io")
            if s:
                out.append({"what": f"exits/IO {target} {job}", "want": f"<= {most}",
                            "got": s["exits"], "met": s["exits"] <= most})
    boots = {t: data["targets"].get(t, {}).get("boot", {}).get("l2") for t in ("image", "qemu")}
    if all(boots.values()):
        b = {t: float(v) for t, v in boots.items()}
        out.append({"what": "L2 boot to userspace, image vs qemu (s)", "want": f"<= {b['qemu']}",
                    "got": b["image"], "met": b["image"] <= b["qemu"]})
    counts = [j.get("nthreads", {}).get("count") for j in
              data["targets"].get("pt", {}).get("jobs", {}).values()]
    counts = [c for c in counts if isinstance(c, int)]
    if counts:
        out.append({"what": "pt VMM threads (1 vCPU + event loop)", "want": f"<= {PT_THREADS}",
                    "got": max(counts), "met": max(counts) <= PT_THREADS})
    for target in ("image", "pt"):
        kib = mem_beyond(data, target)
        out.append({"what": f"{target} RSS beyond guest RAM (KiB)", "want": f"<= {MEMORY_LIMIT_KIB}",
                    "got": kib, "met": kib is not None and kib <= MEMORY_LIMIT_KIB})
    return out


def fmt(x, nd=1):
    if x is None:
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def present(data):
    return [t for t in TARGETS if data["targets"].get(t, {}).get("jobs")]


def table(json_path):
    data = json.load(open(json_path))
    targets = present(data)
    vmms = [t for t in targets if t != "l1"]
    print(f"\n== {json_path} (fio jobs of {data['secs']} s; software emulation: compare ratios)")
    print(f"{'job':<15}" + "".join(f"{t:>22}" for t in targets))
    for job in JOBS:
        cells = []
        for t in targets:
            iops, mbps = figure(data, t, job, "iops"), figure(data, t, job, "mbps")
            cells.append(f"{fmt(iops, 0)} IOPS {fmt(mbps, 1)} MB/s")
        print(f"{job:<15}" + "".join(f"{c:>22}" for c in cells))
    print("\nRatios (IOPS for 4 KiB jobs, MB/s for 1 MiB):")
    names = [n for n, a, b in RATIOS if a in targets and b in targets]
    print(f"{'job':<15}" + "".join(f"{n:>19}" for n in names))
    for job in JOBS:
        r = data["ratios"][job]
        print(f"{job:<15}" + "".join(f"{fmt(r.get(n), 2):>19}" for n in names))
    print("\nsatavm per guest command during each job: engine requests / host system calls"
          " (pass-through: SG_IO commands, and how many went by direct I/O):")
    for t in ("pt", "pt-mapped", "pt-threads", "image", "image-mapped", "image-threads"):
        for job in JOBS:
            p = figure(data, t, job, "per_command")
            if p:
                extra = (f", {fmt(p.get('sg_io'), 2)} SG_IO ({fmt(p.get('direct_io'), 2)} direct)"
                         if "sg_io" in p else "")
                print(f"  {t:<11} {job:<15} {p.get('engine')}: {fmt(p.get('requests'), 2)} requests,"
                      f" {fmt(p.get('syscalls'), 2)} system calls{extra}")
    print("\nVMM threads at the end of each job:")
    for t in vmms:
        n = [figure(data, t, j, "nthreads") for j in JOBS]
        n = [x.get("count") for x in n if x]
        if n:
            print(f"  {TARGET_NAMES[t]:<26} {max(n)}")
    print("\nKVM exits per I/O command during each job (all exits / I/O+MMIO exits), KVM debugfs:")
    print(f"{'job':<15}" + "".join(f"{t:>18}" for t in vmms))
    for job in JOBS:
        cells = []
        for t in vmms:
            p = figure(data, t, job, "per_io")
            cells.append(f"{fmt(p['exits'], 2)} / {fmt(p['io_mmio_exits'], 2)}" if p else "-")
        print(f"{job:<15}" + "".join(f"{c:>18}" for c in cells))
    print("\nWhere L1's CPU went during each job, ms per I/O command (/proc/stat): L2 guest / L1 "
          "user space (VMM threads; fio for l1) / L1 kernel (exits, block layer, drive) / idle\n"
          "(satavm/QEMU rows include L2's 1 s pause before each job: about 1000 ms / I/Os of idle):")
    print(f"{'job':<15}" + "".join(f"{t:>29}" for t in targets))
    for job in JOBS:
        cells = []
        for t in targets:
            c = figure(data, t, job, "cpu_ms_per_io")
            cells.append(" / ".join(fmt(c[k], 2) for k in ("l2_guest", "l1_user", "l1_kernel", "idle"))
                         if c else "-")
        print(f"{job:<15}" + "".join(f"{c:>29}" for c in cells))
    print("\nVMM threads' CPU (user + system), ms per I/O command, busiest first:")
    for t in vmms:
        for job in JOBS:
            th = figure(data, t, job, "thread_ms_per_io")
            if th:
                top = sorted(th.items(), key=lambda kv: -kv[1])[:4]
                print(f"  {t:<6} {job:<15} " + ", ".join(f"{n} {v:.2f}" for n, v in top))
    print("\nVMM memory as the last job ends (or the last job with a reading) (KiB): VmRSS, VmHWM, RssAnon, RssFile, guest RAM "
          "mapping resident, VmRSS - guest resident")
    for t in vmms:
        ms = [figure(data, t, j, "mem") for j in reversed(JOBS)]
        m = next((x for x in ms if x and "beyond_guest_kib" in x), None)
        if m:
            print(f"  {TARGET_NAMES[t]:<26} {m['vmrss']:>8} {m['vmhwm']:>8} {m['rssanon']:>8} "
                  f"{m['rssfile']:>8} {m['guest_rss']:>8} {m['beyond_guest_kib']:>8}"
                  f"   (max over jobs {mem_beyond(data, t)})")
    print("\nBoot to L2 userspace (VMM start on L1's clock / L2's own uptime), s:")
    for t in vmms:
        b = data["targets"].get(t, {}).get("boot")
        if b:
            print(f"  {TARGET_NAMES[t]:<26} {fmt(b.get('wall'), 2):>8} {fmt(b.get('l2'), 2):>8}")
    for t in ("pt", "image"):
        if data["targets"].get(t, {}).get("vmm_exits"):
            print(f"  satavm {t}: {data['targets'][t]['vmm_exits']} (whole run, boot included)")
    print("\nTargets:")
    for c in data["checks"]:
        print(f"  [{'met' if c['met'] else 'MISSED':>6}] {c['what']}: {fmt(c['got'], 2)} (want {c['want']})")


def spread(paths):
    runs = [json.load(open(p)) for p in paths]
    print(f"\n== spread over {len(runs)} runs: min / median / max")
    for job in JOBS:
        for name, _, _ in RATIOS:
            vals = [r["ratios"][job].get(name) for r in runs]
            vals = [v for v in vals if v is not None]
            if vals:
                print(f"  {name:<19} {job:<15} {min(vals):6.2f} {statistics.median(vals):6.2f} "
                      f"{max(vals):6.2f}")
    for t in TARGETS:
        for job in JOBS:
            metric = "mbps" if job.startswith("seq") else "iops"
            vals = [figure(r, t, job, metric) for r in runs]
            vals = [v for v in vals if v is not None]
            if vals:
                print(f"  {t:<19} {job:<15} {metric} {min(vals):9.1f} "
                      f"{statistics.median(vals):9.1f} {max(vals):9.1f}")
    met = [all(c["met"] for c in r["checks"]) for r in runs]
    print(f"  all targets met in {sum(met)} of {len(runs)} runs")


def main(argv):
    if len(argv) >= 4 and argv[1] == "parse":
        parse(argv[2], argv[3], int(argv[4]) if len(argv) > 4 else None)
    elif len(argv) == 3 and argv[1] == "table":
        table(argv[2])
    elif len(argv) >= 3 and argv[1] == "spread":
        spread(argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
