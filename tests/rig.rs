//! The nested test rig as cargo tests.
//!
//! The rig's harness (tests/rig/harness, used here as a library) prepares an L1 boot (the
//! Debian kernel, an initramfs with the satavm binary cargo built and the scenarios) and
//! boots it: QEMU (TCG, emulated AMD SVM) runs L1, which has a real
//! KVM and QEMU's AHCI disk as a real SATA drive; inside it, satavm boots L2. The rig runs
//! once per test binary and kernel generation, all scenarios in one L1 boot (those needing
//! the fault drives in a second); each `#[test]` then checks one scenario's result and log.
//! Needs root (apt-get, for the first `scripts/rig prepare`) and a few minutes.
//! There is no skip: if the rig cannot run, every test fails and says why.
//!
//! Two generations of Linux: every scenario runs with Debian's 6.1 kernel in L1 and L2 (the
//! tests at the top level), and the Linux-facing ones ([`ON_LINUX_6_12`]) once more with
//! 6.12 from bookworm-backports in both (module `linux_6_12`: L2's libahci is the driver
//! under test, L1's libata the SATL pass-through talks to).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use satavm_rig::prepare::{self, payload, Knobs, Mode, Satavm};
use satavm_rig::run;

/// Every scenario in tests/rig/scenarios/, each with its `#[test]` below.
const SCENARIOS: &[&str] = &[
    "l1-environment",
    "l2-boot",
    "l2-boot-elf",
    "l2-serial-input",
    "acpi-poweroff",
    "acpi-reboot",
    "acpi-panic",
    "acpi-halt",
    "acpi-off",
    "ahci-linux",
    "ahci-two-disks",
    "pt-drive",
    "pt-error",
    "selftest-image",
    "selftest-passthrough",
    "inject-linux",
    "hotplug-linux",
    "hotplug-passthrough",
    "cdrom-linux",
    "selftest-cdrom",
    // Needs QEMU's ide-cd in L1: an L1 boot of its own (see `run_rig`).
    "cdrom-passthrough",
    "integrity-verify",
    "integrity-kill",
    "smart-power",
    // 20 L2 boots of its own: --strict with the doorbells under parallel load.
    "strict-boots",
    // Its L2 boots the initramfs variant with fio (the harness builds it for the one boot).
    // Last of this boot: QEMU's stall (see `rig_boot_retrying`) came in about a third of its
    // runs, and a stall re-runs only the scenarios that had not finished.
    "integrity-fio",
    // These two need the fault drives: they run in an L1 boot of their own (see `run_rig`).
    // pt-timeout's host timeouts leave L1's libata with NCQ off and a slower mode on the slow
    // drive, and each of L1's link resets stops QEMU's vCPU for about 2 s while QEMU cancels
    // the throttled read.
    "pt-timeout",
    // After it: it unplugs the vanishing drive's controller from L1 for good.
    "pt-vanish",
    // Needs the installed Debian's drive (tests/rig/debian/run --env): an L1 boot of its own.
    "debian-boot",
];

/// The scenarios that run on Linux 6.12 too: every one where a Linux driver (L2's libahci,
/// or L1's libata under pass-through) meets satavm, the sense paths of pass-through included.
const ON_LINUX_6_12: &[&str] = &[
    "l2-boot",
    "ahci-linux",
    "ahci-two-disks",
    "pt-drive",
    "pt-error",
    "inject-linux",
    "cdrom-linux",
    "integrity-fio",
    "smart-power",
];

/// A Debian kernel generation, in L1 and L2 (the rig's `RIG_KERNEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// bookworm's linux-image-amd64.
    Linux6_1,
    /// bookworm-backports' linux-image-amd64.
    Linux6_12,
}

impl Kernel {
    fn rig_kernel(self) -> &'static str {
        match self {
            Kernel::Linux6_1 => "6.1",
            Kernel::Linux6_12 => "6.12",
        }
    }

    /// Where its runs keep their logs, under RIG_DIR.
    fn logs(self) -> &'static str {
        match self {
            Kernel::Linux6_1 => "logs",
            Kernel::Linux6_12 => "logs-6.12",
        }
    }

    fn scenarios(self) -> &'static [&'static str] {
        match self {
            Kernel::Linux6_1 => SCENARIOS,
            Kernel::Linux6_12 => ON_LINUX_6_12,
        }
    }
}

/// One scenario's result and log.
struct Outcome {
    passed: bool,
    /// Its exit status in L1, or "none" if it never finished.
    rc: String,
    log: String,
}

/// The result of one kernel generation's rig boots in this test binary.
struct RigRun {
    outcomes: BTreeMap<String, Outcome>,
    /// What the harness said while preparing and booting, for failure messages.
    output: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rig run of `kernel`'s scenarios, started by the first test that asks for it. One
/// rig at a time: the machine's cores are QEMU's, and both runs share the cache.
fn rig(kernel: Kernel) -> &'static RigRun {
    static LINUX_6_1: OnceLock<RigRun> = OnceLock::new();
    static LINUX_6_12: OnceLock<RigRun> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let run = match kernel {
        Kernel::Linux6_1 => &LINUX_6_1,
        Kernel::Linux6_12 => &LINUX_6_12,
    };
    run.get_or_init(|| {
        let _only = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        run_rig(kernel)
    })
}

fn run_rig(kernel: Kernel) -> RigRun {
    let rig_dir = std::env::var_os("RIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target").join("rig"));
    let rig = Rig {
        dir: &rig_dir,
        kernel,
    };
    // Scenarios that need the fault drives (slow, vanishing) get an L1 boot of their own, so
    // that the others run on the machine without them: with even one more drive in L1, QEMU's
    // stall (below) came after 8 to 11 L2 boots in each of 6 runs of 15; without, in none of 4.
    let (faults, plain): (Vec<&str>, Vec<&str>) = kernel
        .scenarios()
        .iter()
        .partition(|n| needs_fault_drives(n));
    // Scenarios that need a host optical drive in L1 (QEMU's ide-cd) get one too: the drive
    // is there only for them, for the same reason.
    let (cdrom, plain): (Vec<&str>, Vec<&str>) =
        plain.into_iter().partition(|n| marked(n, "host-cdrom"));
    // The installed Debian boots from a drive of its own (1 GiB, with QEMU in L1): likewise.
    let (debian, plain): (Vec<&str>, Vec<&str>) =
        plain.into_iter().partition(|n| marked(n, "debian-drive"));
    let (mut outcomes, mut output) = rig_boot_retrying(&rig, &plain, &[]);
    if !faults.is_empty() {
        let (more, said) = rig_boot_retrying(&rig, &faults, &[]);
        outcomes.extend(more);
        output += &format!("\n--- the fault-drive scenarios, in an L1 boot of their own\n{said}");
    }
    if !cdrom.is_empty() {
        let (more, said) = rig_boot_retrying(&rig, &cdrom, &host_cdrom_env(&rig_dir));
        outcomes.extend(more);
        output +=
            &format!("\n--- the host optical drive scenarios, in an L1 boot of their own\n{said}");
    }
    if !debian.is_empty() {
        let (more, said) = rig_boot_retrying(&rig, &debian, &debian_drive_env(&rig_dir));
        outcomes.extend(more);
        output += &format!("\n--- the installed Debian, in an L1 boot of its own\n{said}");
    }
    RigRun { outcomes, output }
}

/// The L1 of `# rig: host-cdrom` scenarios: QEMU's ide-cd on L1's AHCI port 3 with the
/// first disc of cdrom-linux (tests/rig/cdrom/host-iso.sh writes it), sr_mod in L1.
fn host_cdrom_env(rig_dir: &Path) -> Vec<(String, String)> {
    let iso = rig_dir.join("host-cd.iso");
    fs::create_dir_all(rig_dir).expect("cannot create the rig directory");
    let made = Command::new(repo().join("tests/rig/cdrom/host-iso.sh"))
        .arg(&iso)
        .status()
        .expect("cannot run tests/rig/cdrom/host-iso.sh");
    assert!(made.success(), "tests/rig/cdrom/host-iso.sh failed");
    vec![
        ("RIG_L1_MODULES_EXTRA".to_string(), "sr_mod".to_string()),
        (
            "RIG_QEMU_ARGS".to_string(),
            format!(
                "-drive if=none,id=cd0,file={},media=cdrom,readonly=on -device ide-cd,drive=cd0,bus=ahci.3",
                iso.display()
            ),
        ),
    ]
}

/// The L1 of `# rig: debian-drive` scenarios, as `tests/rig/debian/run --env` prints it
/// (after building the installation once): the Debian drive on L1's AHCI port 3, QEMU and
/// e2fsprogs in L1, more memory, a longer scenario timeout.
fn debian_drive_env(rig_dir: &Path) -> Vec<(String, String)> {
    let made = Command::new(repo().join("tests/rig/debian/run"))
        .arg("--env")
        .env("RIG_DIR", rig_dir)
        .env_remove("RIG_QEMU_ARGS")
        .env_remove("RIG_L1_BINARIES")
        .env_remove("RIG_L1_FILES")
        .output()
        .expect("cannot run tests/rig/debian/run --env");
    assert!(
        made.status.success(),
        "tests/rig/debian/run --env failed ({}):\n{}",
        made.status,
        String::from_utf8_lossy(&made.stderr)
    );
    let env: Vec<(String, String)> = String::from_utf8_lossy(&made.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        env.iter().any(|(k, _)| k == "RIG_QEMU_ARGS"),
        "tests/rig/debian/run --env printed no RIG_QEMU_ARGS: {env:?}"
    );
    env
}

/// Whether scenario `name` asks for the rig's fault drives (a `# rig: fault-drives` line).
fn needs_fault_drives(name: &str) -> bool {
    marked(name, "fault-drives")
}

/// Whether scenario `name` has a line `# rig: MARKER`.
fn marked(name: &str, marker: &str) -> bool {
    let knobs = Knobs::from_lookup(|_| None).expect("the rig's default knobs");
    payload::markers(&knobs, name)
        .unwrap_or_else(|e| panic!("scenario {name}: {e}"))
        .iter()
        .any(|m| m == marker)
}

/// Where and on which kernel generation the rig runs.
struct Rig<'a> {
    dir: &'a Path,
    kernel: Kernel,
}

/// [`rig_boot`], then once more for the scenarios that never finished if L1 stalled.
fn rig_boot_retrying(
    rig: &Rig<'_>,
    names: &[&str],
    env: &[(String, String)],
) -> (BTreeMap<String, Outcome>, String) {
    let (mut outcomes, mut output) = rig_boot(rig, names, env);
    // Now and then QEMU's vCPU stops for good (below satavm: L1's own watchdogs and heartbeats
    // stop too); the harness then says "L1 stalled". Under integrity-fio's long I/O load that
    // came in 8 of 25 L1 boots. Scenarios that never finished get up to two more, fresh L1
    // boots, and the output says so.
    let mut stalled = output.contains("L1 stalled");
    for _ in 0..STALL_RETRIES {
        if !stalled {
            break;
        }
        let unfinished: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| outcomes.get(*n).is_none_or(|o| o.rc == "none"))
            .collect();
        if unfinished.is_empty() {
            break;
        }
        let (again, more) = rig_boot(rig, &unfinished, env);
        output += &format!("\n--- L1 stalled; re-ran {unfinished:?} in a new L1 boot\n{more}");
        stalled = more.contains("L1 stalled");
        outcomes.extend(again);
    }
    (outcomes, output)
}

/// Fresh L1 boots for scenarios an L1 stall left unfinished.
const STALL_RETRIES: usize = 2;

/// One L1 boot for `names`, with the knobs of this process's environment and `env` on top:
/// the harness prepares it (kernels, initramfs, this test binary's satavm) and boots it.
/// Returns the outcomes and what it said.
fn rig_boot(
    rig: &Rig<'_>,
    names: &[&str],
    env: &[(String, String)],
) -> (BTreeMap<String, Outcome>, String) {
    let logs = rig.dir.join(rig.kernel.logs());
    let mut set: BTreeMap<&str, String> =
        env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    set.insert("RIG_DIR", rig.dir.display().to_string());
    set.insert("RIG_LOGS", logs.display().to_string());
    set.insert("RIG_KERNEL", rig.kernel.rig_kernel().to_string());
    let lookup = |name: &str| match name {
        // Both levels on this run's generation.
        "RIG_L1_KERNEL" | "RIG_L2_KERNEL" => None,
        _ => set.get(name).cloned().or_else(|| std::env::var(name).ok()),
    };
    let mut output = format!(
        "RIG_KERNEL={} {}\n",
        rig.kernel.rig_kernel(),
        env.iter()
            .map(|(k, v)| format!("{k}={v:?} "))
            .collect::<String>()
    );
    let mut say = |line: &str| {
        // Shown with --nocapture, and kept in the failure messages below.
        println!("{line}");
        output.push_str(line);
        output.push('\n');
    };
    let prepared = Knobs::from_lookup(lookup).and_then(|knobs| {
        let mode = Mode::Run {
            names: names.iter().map(|n| n.to_string()).collect(),
            timeout: knobs.scenario_timeout,
        };
        let satavm = Satavm::Path(env!("CARGO_BIN_EXE_satavm").into());
        prepare::boot(&knobs, mode, &satavm, &mut |l| say(&format!("rig: {l}")))
    });
    let boot = prepared
        .and_then(|boot| run::run(&boot.prepared, &boot.names, boot.overall, &mut |l| say(&l)));
    match boot {
        Ok(report) => {
            if report.stall.is_some() {
                output.push_str("L1 stalled\n");
            }
            let outcomes = report
                .outcomes
                .into_iter()
                .map(|o| {
                    let outcome = Outcome {
                        passed: o.passed(),
                        rc: o.rc.map_or("none".to_string(), |rc| rc.to_string()),
                        log: o.log,
                    };
                    (o.name, outcome)
                })
                .collect();
            (outcomes, output)
        }
        Err(e) => {
            output += &format!("the harness could not prepare or boot L1: {e}\n");
            (BTreeMap::new(), output)
        }
    }
}

/// Asserts that scenario `name` passed on `kernel` and returns its log.
fn passed_on(kernel: Kernel, name: &str) -> &'static str {
    let run = rig(kernel);
    let Some(outcome) = run.outcomes.get(name) else {
        panic!(
            "the rig on Linux {} reported no result for {name}\n{}",
            kernel.rig_kernel(),
            run.output
        );
    };
    assert!(
        outcome.passed,
        "rig scenario {name} failed on Linux {} (rc={})\n--- its log\n{}\n--- the rig\n{}",
        kernel.rig_kernel(),
        outcome.rc,
        outcome.log,
        run.output
    );
    &outcome.log
}

/// Asserts that a passed scenario's log has a line containing `needle`.
fn assert_log_line(name: &str, log: &str, needle: &str) {
    assert!(
        log.lines().any(|line| line.contains(needle)),
        "{name}: no line containing {needle:?} in its log:\n{log}"
    );
}

#[test]
fn every_scenario_file_has_a_test() {
    let dir = repo().join("tests").join("rig").join("scenarios");
    let mut found: Vec<String> = fs::read_dir(&dir)
        .expect("tests/rig/scenarios")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sh").map(str::to_string)
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "tests/rig/scenarios/*.sh and SCENARIOS in tests/rig.rs differ"
    );
}

#[test]
fn cdrom_under_linux() {
    check_cdrom_under_linux(Kernel::Linux6_1);
}

fn check_cdrom_under_linux(kernel: Kernel) {
    let log = passed_on(kernel, "cdrom-linux");
    for needle in [
        "ok: sr0 with the configured model",
        "ok: blkid sees iso9660",
        "ok: disc 1: ./dir/big.bin has the md5 L1 expects",
        "ok: after the guest's eject the drive has no medium",
        "ok: after the guest closes the tray the disc is back",
        "ok: the guest sees the host's disc swap",
        "ok: disc 2: ./numbers2.txt has the md5 L1 expects",
        "ok: L2 timed its 1 MiB reads of sr0",
        "ok: no --strict rule raised",
    ] {
        assert_log_line("cdrom-linux", log, needle);
    }
}

#[test]
fn cdrom_passthrough_of_a_host_drive() {
    let log = passed_on(Kernel::Linux6_1, "cdrom-passthrough");
    for needle in [
        "ok: sr0 shows the host drive's model",
        "ok: blkid sees iso9660",
        "ok: ./dir/big.bin has the md5 L1 expects",
        "ok: L2's read of the disc equals L1's /dev/sr0",
        "ok: L2 timed its 1 MiB reads of sr0",
        "figure: L1 itself: 1 MiB read of sr0",
        "ok: the guest's WRITE(10) was refused with ILLEGAL REQUEST",
        "ok: no --strict rule raised",
    ] {
        assert_log_line("cdrom-passthrough", log, needle);
    }
    // satavm's trace of every SG_IO it sent the host drive: the reads are there, the refused
    // WRITE(10) (opcode 2Ah) is not.
    let cdbs: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("json-sg_io: "))
        .map(|l| {
            let e: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("trace line {l}: {e}"));
            e["cdb"]
                .as_str()
                .unwrap_or_else(|| panic!("sg_io trace line without a cdb: {l}"))
                .to_string()
        })
        .collect();
    assert!(
        cdbs.iter().any(|c| c.starts_with("28")),
        "no READ(10) among the SG_IO commands sent to the host drive: {cdbs:?}"
    );
    assert!(
        !cdbs.iter().any(|c| c.starts_with("2a")),
        "the refused WRITE(10) reached the host drive: {cdbs:?}"
    );
}

#[test]
fn selftest_firmware_with_an_atapi_drive() {
    let log = passed_on(Kernel::Linux6_1, "selftest-cdrom");
    assert_log_line(
        "selftest-cdrom",
        log,
        "satavm-selftest: RESULT PASS (15 checks)",
    );
}

#[test]
fn an_installed_debian_boots_from_the_drive_passed_through_from_an_image_and_under_qemu() {
    let log = passed_on(Kernel::Linux6_1, "debian-boot");
    for needle in [
        "ok: pt: systemd reached the autologin shell on ttyS0",
        "ok: pt: systemd is running (or degraded, failed units listed)",
        "ok: pt: satavm exited 0 after systemctl poweroff",
        "ok: pt: hdparm in L2 sees the real drive's model",
        "ok: pt: e2fsck -fn finds the filesystem clean",
        "ok: pt: L1 finds the file L2 wrote, on the drive",
        "ok: image: satavm exited 0 after systemctl poweroff",
        "ok: image: hdparm in L2 sees the emulated drive's model",
        "ok: image: e2fsck -fn finds the filesystem clean",
        "ok: image: L1 finds the file L2 wrote, in the image",
        "ok: qemu: QEMU exited 0 after systemctl poweroff",
        "ok: qemu: e2fsck -fn finds the filesystem clean",
    ] {
        assert_log_line("debian-boot", log, needle);
    }
    // The boot-time table of issue 19: one figure per VMM, a number of seconds each.
    for vmm in ["pt", "image", "qemu"] {
        let prefix = format!("figure: {vmm} boot to the root shell ");
        let secs = log
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            secs.is_some_and(|s| s > 0.0),
            "debian-boot: no boot time for {vmm} in its log:\n{log}"
        );
    }
}

#[test]
fn l1_environment() {
    let log = passed_on(Kernel::Linux6_1, "l1-environment");
    assert_log_line("l1-environment", log, "ok: nested paging is enabled");
    assert_log_line("l1-environment", log, "ok: model matches");
    assert_log_line("l1-environment", log, "is a libata device");
}

#[test]
fn l2_boot() {
    check_l2_boot(Kernel::Linux6_1);
}

fn check_l2_boot(kernel: Kernel) {
    let log = passed_on(kernel, "l2-boot");
    assert_log_line("l2-boot", log, "@@L2 nproc=2");
    assert_log_line("l2-boot", log, "@@L2 cpuinfo-processors=2");
    assert_log_line("l2-boot", log, "satavm exit status: 0");
}

#[test]
fn l2_boot_from_elf_vmlinux_with_4_cpus() {
    let log = passed_on(Kernel::Linux6_1, "l2-boot-elf");
    assert_log_line("l2-boot-elf", log, "@@L2 nproc=4");
}

#[test]
fn l2_serial_input() {
    let log = passed_on(Kernel::Linux6_1, "l2-serial-input");
    assert_log_line("l2-serial-input", log, "typed-42");
    assert_log_line(
        "l2-serial-input",
        log,
        "ok: satavm exited 0 when L2 powered off",
    );
}

#[test]
fn acpi_poweroff_ends_satavm_with_0_and_linux_reports_no_acpi_errors() {
    let log = passed_on(Kernel::Linux6_1, "acpi-poweroff");
    for needle in [
        "ok: satavm exited 0",
        "ok: L2 found the RSDP table in the BIOS area",
        "ok: L2 found the DSDT table in the BIOS area",
        "ok: L2 found the APIC table in the BIOS area",
        "ok: ACPI interpreter enabled",
        "ok: no ACPI errors or warnings in L2's dmesg",
        "ok: L2 took its 2 CPUs from the MADT",
        "ok: COM1 is an ACPI device",
        "ok: through the sleep control register",
    ] {
        assert_log_line("acpi-poweroff", log, needle);
    }
}

#[test]
fn acpi_reboot_ends_satavm_with_the_reboot_status() {
    let log = passed_on(Kernel::Linux6_1, "acpi-reboot");
    assert_log_line("acpi-reboot", log, "ok: satavm exited 80 when L2 rebooted");
    assert_log_line("acpi-reboot", log, "ok: through the ACPI reset register");
}

#[test]
fn acpi_panic_ends_satavm_with_the_panic_status() {
    let log = passed_on(Kernel::Linux6_1, "acpi-panic");
    assert_log_line(
        "acpi-panic",
        log,
        "ok: L2's pvpanic driver bound to the ACPI device",
    );
    assert_log_line("acpi-panic", log, "ok: satavm exited 81 when L2 panicked");
}

#[test]
fn acpi_halt_ends_satavm_with_the_halt_status() {
    let log = passed_on(Kernel::Linux6_1, "acpi-halt");
    assert_log_line("acpi-halt", log, "ok: satavm exited 82 when L2 halted");
    assert_log_line(
        "acpi-halt",
        log,
        "ok: acpi=off: satavm exited 82 when L2's poweroff halted it",
    );
}

#[test]
fn acpi_off_boots_on_the_mp_table() {
    let log = passed_on(Kernel::Linux6_1, "acpi-off");
    assert_log_line("acpi-off", log, "ok: acpi=off: L2 read the MP table");
    assert_log_line("acpi-off", log, "ok: acpi=off: L2 has both CPUs");
    assert_log_line(
        "acpi-off",
        log,
        "ok: acpi=off: satavm exited 80 after L2's reboot",
    );
    assert_log_line(
        "acpi-off",
        log,
        "figure: L2 boot to userspace (L2 uptime, s): with ACPI",
    );
}

#[test]
fn ahci_linux() {
    check_ahci_linux(Kernel::Linux6_1);
}

fn check_ahci_linux(kernel: Kernel) {
    let log = passed_on(kernel, "ahci-linux");
    for needle in [
        "ok: ahci bound: AHCI 1.3.1, 32 slots",
        "ok: libata enabled NCQ with depth 32",
        "ok: configured model in IDENTIFY",
        "ok: configured serial in IDENTIFY",
        "ok: filesystem files verified after remount",
        "ok: NCQ peak depth",
        "ok: L1 finds L2's flushed pattern in the image",
    ] {
        assert_log_line("ahci-linux", log, needle);
    }
}

#[test]
fn ahci_two_disks() {
    check_ahci_two_disks(Kernel::Linux6_1);
}

fn check_ahci_two_disks(kernel: Kernel) {
    let log = passed_on(kernel, "ahci-two-disks");
    assert_log_line("ahci-two-disks", log, "ok: a.img holds what L2 wrote");
    assert_log_line("ahci-two-disks", log, "ok: b.img holds what L2 wrote");
    assert_log_line(
        "ahci-two-disks",
        log,
        "ok: PxSACT/PxCI writes were taken by the doorbells",
    );
    assert_log_line(
        "ahci-two-disks",
        log,
        "ok: register reads exited to satavm (trap mode)",
    );
}

#[test]
fn passthrough_drive() {
    check_passthrough_drive(Kernel::Linux6_1);
}

fn check_passthrough_drive(kernel: Kernel) {
    let log = passed_on(kernel, "pt-drive");
    for needle in [
        "ok: L2 sees the drive's model",
        "ok: L2 sees the drive's serial",
        "ok: L1 reads L2's pattern from",
        "ok: satavm refused F3h before the drive",
        "host commands in flight",
        "ok: the sg engine moved every command's data, 0 B bounced",
    ] {
        assert_log_line("pt-drive", log, needle);
    }
}

#[test]
fn passthrough_drive_error() {
    check_passthrough_drive_error(Kernel::Linux6_1);
}

fn check_passthrough_drive_error(kernel: Kernel) {
    let log = passed_on(kernel, "pt-error");
    assert_log_line(
        "pt-error",
        log,
        "ok: L2's kernel reports the I/O error at that sector",
    );
    assert_log_line("pt-error", log, "ok: later writes and reads succeed");
}

#[test]
fn passthrough_command_timeout() {
    let log = passed_on(Kernel::Linux6_1, "pt-timeout");
    for needle in [
        "ok: satavm says a command timed out on the host",
        "ok: satavm's summary counts",
        "ok: L1's libata reset",
        "ok: L2's read failed instead of hanging",
        "ok: L2's kernel reports an I/O error",
        "ok: small reads work again after the throttle drained",
        "ok: satavm kept running and exited 0 when L2 powered off",
        "ok: L1 reads",
    ] {
        assert_log_line("pt-timeout", log, needle);
    }
}

#[test]
fn passthrough_drive_vanishes() {
    let log = passed_on(Kernel::Linux6_1, "pt-vanish");
    for needle in [
        "ok: L1 removed the controller",
        "ok: satavm said the drive vanished",
        "ok: L2's reads failed after the unplug (no hang)",
        "ok: L2 kept running",
        "ok: satavm kept running and exited 0 on L2's poweroff",
    ] {
        assert_log_line("pt-vanish", log, needle);
    }
}

#[test]
fn selftest_firmware_on_an_image() {
    let log = passed_on(Kernel::Linux6_1, "selftest-image");
    assert_log_line(
        "selftest-image",
        log,
        "satavm-selftest: RESULT PASS (12 checks)",
    );
}

#[test]
fn selftest_firmware_through_passthrough() {
    let log = passed_on(Kernel::Linux6_1, "selftest-passthrough");
    assert_log_line("selftest-passthrough", log, "satavm-selftest: RESULT PASS");
}

#[test]
fn fault_injection_under_linux() {
    check_fault_injection_under_linux(Kernel::Linux6_1);
}

#[test]
fn hotplug_surprise_removal_and_insertion_under_linux() {
    let log = passed_on(Kernel::Linux6_1, "hotplug-linux");
    for needle in [
        "ok: L2's reads failed with an I/O error",
        "ok: libata: ata1: SATA link down",
        "ok: the sd device of the removed drive was removed",
        "ok: L2 found a new sd device for the added drive",
        "ok: L2 read the new image's bytes correctly",
        "ok: event DRIVE_REMOVED for port 0",
        "ok: event DRIVE_ADDED for port 1",
        "ok: satavm exited 0",
        "latency: drive-del to L2's sda removal",
    ] {
        assert_log_line("hotplug-linux", log, needle);
    }
}

#[test]
fn control_socket_on_a_passthrough_drive_under_linux() {
    let log = passed_on(Kernel::Linux6_1, "hotplug-passthrough");
    for needle in [
        "ok: query-stats answered twice while L2 read",
        "ok: after inject-add, L2's read of LBA 4096 failed",
        "ok: after inject-del, L2 reads LBA 4096 again",
        "ok: libata reported the injected error (UNC)",
        "ok: the block layer reported LBA 4096 failed",
        "ok: event DRIVE_ERROR for the injected error",
        "ok: libata: ata1: SATA link down",
        "ok: L2's reads failed with an I/O error",
        "ok: event DRIVE_REMOVED",
        "ok: event DRIVE_ADDED",
        "ok: the drive put back reads what L1 reads",
        "ok: satavm exited 0",
        "latency: drive-del to L2's sda removal",
    ] {
        assert_log_line("hotplug-passthrough", log, needle);
    }
    // The replies the scenario logged (satavm ctl prints the whole reply object), parsed as
    // JSON: their `return` values.
    let json = |name: &str| -> serde_json::Value {
        let prefix = format!("json: {name} ");
        let line = log
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("hotplug-passthrough: no {name} reply in its log:\n{log}"));
        let reply: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        reply
            .get("return")
            .cloned()
            .unwrap_or_else(|| panic!("{name}: a reply without `return`: {line}"))
    };
    // query-stats while L2 read: port 0's pass-through drive moved data between the two
    // snapshots, through the host (SG_IO) side.
    let port0 = |v: &serde_json::Value, key: &str| -> u64 {
        v["ports"][0][key]
            .as_u64()
            .unwrap_or_else(|| panic!("query-stats: no number ports[0].{key}: {v}"))
    };
    let host0 = |v: &serde_json::Value, key: &str| -> u64 {
        v["ports"][0]["host"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("query-stats: no number ports[0].host.{key}: {v}"))
    };
    let (before, after) = (json("stats-before"), json("stats-after"));
    assert!(
        port0(&after, "bytes_read") > port0(&before, "bytes_read"),
        "bytes_read did not grow while L2 read: {before} then {after}"
    );
    assert!(
        port0(&after, "commands") > port0(&before, "commands"),
        "commands did not grow while L2 read: {before} then {after}"
    );
    assert!(
        host0(&after, "commands_sent") > host0(&before, "commands_sent"),
        "the host side sent no SG_IO commands meanwhile: {before} then {after}"
    );
    // The rule added at run time is listed with its id, in --inject's syntax.
    let id = json("inject-add")["id"].as_u64().expect("inject-add's id");
    let list = json("inject-list");
    let rules = list.as_array().expect("inject-list returns an array");
    assert!(
        rules.iter().any(|r| r["id"].as_u64() == Some(id)
            && r["rule"]
                .as_str()
                .is_some_and(|t| t.contains("lba=4096-4103"))),
        "inject-list does not list rule {id}: {list}"
    );
}

fn check_fault_injection_under_linux(kernel: Kernel) {
    let log = passed_on(kernel, "inject-linux");
    for needle in [
        "ok: the read of the bad LBA failed in L2",
        "ok: libata's error handling saw UNC",
        "ok: the read that dropped the link succeeded after recovery",
        "ok: libata reset the link",
        "ok: the guest kept running and satavm exited 0",
        "ok: trace: the NCQ read ended with ERR/UNC",
        "ok: trace: libata read the NCQ error log (10h)",
        "ok: trace: PhyRdy lost (DIAG.N, ERR.C)",
    ] {
        assert_log_line("inject-linux", log, needle);
    }
}

#[test]
fn integrity_verify_two_disks_concurrent_ncq() {
    let log = passed_on(Kernel::Linux6_1, "integrity-verify");
    for needle in [
        "ok: NCQ on (queue depth > 1)",
        "ok: L2 read back every region intact",
        "ok: a.img holds every region L2 verified",
        "ok: b.img holds every region L2 verified",
        "ok: port 0 ran queued commands concurrently, without errors",
        "ok: port 1 ran queued commands concurrently, without errors",
        "ok: registers mapped into the guest",
        "ok: no register read exited to satavm",
    ] {
        assert_log_line("integrity-verify", log, needle);
    }
}

#[test]
fn integrity_fio_verify_two_disks_ncq() {
    check_integrity_fio_verify_two_disks_ncq(Kernel::Linux6_1);
}

fn check_integrity_fio_verify_two_disks_ncq(kernel: Kernel) {
    let log = passed_on(kernel, "integrity-fio");
    for needle in [
        "ok: satavm exited 0",
        "ok: L2 sees disk FIO-A with NCQ on (queue depth > 1)",
        "ok: L2 sees disk FIO-B with NCQ on (queue depth > 1)",
        "ok: fio exited 0 on sda",
        "ok: fio exited 0 on sdb",
        "ok: sda: zero verify errors",
        "ok: sdb: zero verify errors",
        "ok: moved ",
        "ok: port 0 ran queued commands concurrently, without errors",
        "ok: port 1 ran queued commands concurrently, without errors",
    ] {
        assert_log_line("integrity-fio", log, needle);
    }
}

#[test]
fn integrity_kill_loses_nothing_flushed() {
    let log = passed_on(Kernel::Linux6_1, "integrity-kill");
    assert_log_line("integrity-kill", log, "ok: satavm killed with SIGKILL");
    assert_log_line("integrity-kill", log, "flushed blocks are intact");
}

#[test]
fn smart_power() {
    check_smart_power(Kernel::Linux6_1);
}

fn check_smart_power(kernel: Kernel) {
    let log = passed_on(kernel, "smart-power");
    for needle in [
        "ok: smartctl -a exit 0",
        "ok: smartctl -a prints an attribute table",
        "ok: smartctl -x exit 0",
        "ok: short self-test completed without error and logged",
        "ok: hdparm -y then -C: standby",
        "ok: I/O after SLEEP recovers through libata's reset",
        "ok: libata.force=1.5G: sata_spd 1.5 Gbps",
        "ok: read-only: the kernel reports failed writes",
        "ok: read-only: libata did not turn NCQ off or slow the link",
    ] {
        assert_log_line("smart-power", log, needle);
    }
}

#[test]
fn strict_boots() {
    let log = passed_on(Kernel::Linux6_1, "strict-boots");
    assert_log_line(
        "strict-boots",
        log,
        "boots under --strict with doorbells and parallel load exited 0",
    );
}

#[test]
fn the_linux_6_12_scenarios_exist() {
    for name in ON_LINUX_6_12 {
        assert!(SCENARIOS.contains(name), "{name} is not in SCENARIOS");
    }
}

/// The Linux-facing scenarios with Debian's 6.12 kernel in L1 and L2.
mod linux_6_12 {
    use super::*;

    #[test]
    fn l2_boot() {
        check_l2_boot(Kernel::Linux6_12);
    }

    #[test]
    fn ahci_linux() {
        check_ahci_linux(Kernel::Linux6_12);
    }

    #[test]
    fn ahci_two_disks() {
        check_ahci_two_disks(Kernel::Linux6_12);
    }

    #[test]
    fn passthrough_drive() {
        check_passthrough_drive(Kernel::Linux6_12);
    }

    #[test]
    fn passthrough_drive_error() {
        check_passthrough_drive_error(Kernel::Linux6_12);
    }

    #[test]
    fn fault_injection_under_linux() {
        check_fault_injection_under_linux(Kernel::Linux6_12);
    }

    #[test]
    fn integrity_fio_verify_two_disks_ncq() {
        check_integrity_fio_verify_two_disks_ncq(Kernel::Linux6_12);
    }

    #[test]
    fn smart_power() {
        check_smart_power(Kernel::Linux6_12);
    }

    #[test]
    fn cdrom_under_linux() {
        check_cdrom_under_linux(Kernel::Linux6_12);
    }
}
