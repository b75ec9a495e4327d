//! L1's machine: QEMU with software emulation and emulated AMD SVM (a real KVM inside), the
//! rig drive on QEMU's AHCI, the faulty drive, and in boots that need them the slow and the
//! vanishing drive (tests/rig/README.md). Fresh sparse images every boot.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::prepared::Prepared;
use crate::Error;

/// The faulty drive's and the fault drives' sizes.
const FAULTY_BYTES: u64 = 64 << 20;
const FAULT_DRIVE_BYTES: u64 = 16 << 20;

pub struct Machine<'a> {
    prepared: &'a Prepared,
}

impl<'a> Machine<'a> {
    /// Creates this boot's drive images (and blkdebug's rules) in the build directory.
    pub fn new(prepared: &'a Prepared) -> Result<Machine<'a>, Error> {
        let m = Machine { prepared };
        m.fresh_image("drive.img", prepared.drive_bytes)?;
        m.fresh_image("faulty.img", FAULTY_BYTES)?;
        // The faulty drive: blkdebug fails every read that touches FAULTY_SECTOR with EIO
        // (QEMU's IDE core then reports ABRT to L1's libata).
        let rules = format!(
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{}\"\nonce = \"off\"\n",
            prepared.faulty_sector
        );
        let conf = m.path("blkdebug.conf");
        fs::write(&conf, rules).map_err(|e| Error::io(&conf, e))?;
        if prepared.fault_drives {
            m.fresh_image("slow.img", FAULT_DRIVE_BYTES)?;
            m.fresh_image("vanish.img", FAULT_DRIVE_BYTES)?;
        }
        Ok(m)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.prepared.build.join(name)
    }

    fn fresh_image(&self, name: &str, bytes: u64) -> Result<(), Error> {
        let path = self.path(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.set_len(bytes).map_err(|e| Error::io(&path, e))
    }

    /// The QEMU command line, without serial ports, display or monitor (the caller's).
    pub fn command(&self) -> Command {
        let p = self.prepared;
        let mut cmd = Command::new(&p.qemu_bin);
        cmd.args(&p.qemu_data_args)
            .args(["-accel", "tcg", "-cpu", "EPYC,+svm"])
            .args(["-m", &p.mem_mib.to_string(), "-smp", &p.smp.to_string()])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&p.l1_kernel)
            .arg("-initrd")
            .arg(&p.l1_initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 panic=-1 quiet {}", p.l1_append))
            .arg("-drive")
            .arg(drive("d0", &self.path("drive.img"), ""))
            .args(["-device", "ahci,id=ahci"])
            .arg("-device")
            .arg(format!(
                "ide-hd,drive=d0,bus=ahci.0,model={},serial={}",
                p.model, p.serial
            ))
            .arg("-drive")
            .arg(format!(
                "if=none,id=d1,format=raw,file=blkdebug:{}:{}",
                self.path("blkdebug.conf").display(),
                self.path("faulty.img").display()
            ))
            .args([
                "-device",
                "ide-hd,drive=d1,bus=ahci.1,model=SATAVM-RIG-FAULTY,serial=RIG0002",
            ]);
        if p.fault_drives {
            // Only in boots that need them: with even one more drive in L1, QEMU 7.2's stall
            // came after 8 to 11 L2 boots in each of 6 runs of 15; without, in none of 4.
            // The slow drive: QEMU's throttling lets the first slow_burst bytes through at
            // full speed (L1's own partition scan stays within them), then slow_bps bytes/s.
            let throttle = format!(
                ",throttling.bps-total={},throttling.bps-total-max={}",
                p.slow_bps, p.slow_burst
            );
            cmd.arg("-drive")
                .arg(drive("d2", &self.path("slow.img"), &throttle))
                .args([
                    "-device",
                    "ide-hd,drive=d2,bus=ahci.2,model=SATAVM-RIG-SLOW,serial=RIG0003",
                ])
                // The vanishing drive, alone on a second AHCI controller: QEMU cannot unplug
                // an ide-hd from AHCI, but it can unplug the controller from the PCI bus
                // (ACPI PCI hotplug in L1), which "@@RIG UNPLUG ahci-vanish" asks for.
                .args(["-device", "ahci,id=ahci-vanish,bus=pci.0"])
                .arg("-drive")
                .arg(drive("d3", &self.path("vanish.img"), ""))
                .args([
                    "-device",
                    "ide-hd,drive=d3,bus=ahci-vanish.0,model=SATAVM-RIG-VANISH,serial=RIG0004",
                ]);
        }
        cmd.args(&p.extra_args);
        cmd
    }
}

fn drive(id: &str, file: &Path, options: &str) -> String {
    format!(
        "if=none,id={id},file={},format=raw{options}",
        file.display()
    )
}
