//! The non-queued commands the emulated drive answers at once in `submit`, from its own state:
//! IDENTIFY, the logs, SMART, SET FEATURES, SET MULTIPLE MODE and the non-data commands (ACS-3
//! clause 7). Their data is at most a few sectors the drive builds itself; nothing here touches
//! the medium (reads and writes, PIO ones included, go through the engine: [`super::media`]).
//!
//! PIO data-in as FISes (SATA 3.x 11.7): per DRQ block a PIO Setup FIS with I=1, D=1, the
//! block's byte count and E_Status the status after the block (the final status after the last
//! block, no Register D2H).

use crate::ata::command::{dco, opcode, smart, Direction, Protocol};
use crate::ata::identify::{self, IdentifyParams, TransferMode, MAX_MULTIPLE_SECTORS};
use crate::ata::log::{self, address, LogPage};
use crate::ata::registers::{error, status, SECTOR_SIZE};
use crate::ata::smart as ata_smart;
use crate::ata::stats_log;
use crate::ata::taskfile::{
    d2h_abort, d2h_error, d2h_good, range_ok, signature, with_lba, Taskfile, LBA28_MAX, STATUS_GOOD,
};
use crate::sata::{DataPath, Fis, PioSetup, RegisterD2h, Submission};

use super::power::PowerState;
use super::EmulatedDrive;

/// SMART commands carry this signature in LBA 23:8 (LBA mid 4Fh, LBA high C2h); RETURN STATUS
/// answers with it for "threshold not exceeded" (ACS-3 7.48.8).
const SMART_SIGNATURE: u64 = 0xc2_4f00;

/// Status after a PIO data block when more blocks follow: the device is busy preparing them.
const STATUS_BUSY: u8 = status::BSY | status::DRDY;

/// The FISes and byte count of a command being carried out.
struct Outcome {
    fises: Vec<Fis>,
    bytes: u32,
}

impl Outcome {
    fn end(mut self, d2h: RegisterD2h) -> Self {
        self.fises.push(Fis::RegisterD2h(d2h));
        self
    }
}

fn only(d2h: RegisterD2h) -> Outcome {
    Outcome {
        fises: vec![Fis::RegisterD2h(d2h)],
        bytes: 0,
    }
}

fn pio_setup(device_to_host: bool, interrupt: bool, e_status: u8, bytes: usize) -> Fis {
    Fis::PioSetup(PioSetup {
        interrupt,
        device_to_host,
        status: status::DRDY | status::DRQ,
        e_status,
        transfer_count: bytes as u16,
        ..Default::default()
    })
}

/// Send `payload` to the host by PIO data-in in blocks of `block` bytes.
fn pio_in(data: &DataPath, payload: &[u8], block: usize, device: u8) -> Outcome {
    let mut out = Outcome {
        fises: Vec::new(),
        bytes: 0,
    };
    let n = payload.chunks(block).count();
    for (i, chunk) in payload.chunks(block).enumerate() {
        if data.write_at(u64::from(out.bytes), chunk).is_err() {
            return out.end(d2h_abort(device));
        }
        let e_status = if i + 1 == n { STATUS_GOOD } else { STATUS_BUSY };
        out.fises.push(pio_setup(true, true, e_status, chunk.len()));
        out.bytes += chunk.len() as u32;
    }
    out
}

/// Send `payload` by DMA data-in (READ LOG DMA EXT).
fn dma_in(data: &DataPath, payload: &[u8], device: u8) -> Outcome {
    if data.write_at(0, payload).is_err() {
        return only(d2h_abort(device));
    }
    Outcome {
        fises: vec![Fis::RegisterD2h(d2h_good())],
        bytes: payload.len() as u32,
    }
}

/// Take `len` bytes from the host by PIO data-out (SATA 3.x 11.8): a PIO Setup FIS (D=0)
/// per 512-byte block, I=1 on all but the first, then a Register D2H FIS with I=1.
fn pio_out(data: &DataPath, buf: &mut [u8], device: u8) -> Result<Vec<Fis>, Outcome> {
    if data.read_at(0, buf).is_err() {
        return Err(only(d2h_abort(device)));
    }
    let mut fises: Vec<Fis> = (0..buf.len().div_ceil(SECTOR_SIZE))
        .map(|i| pio_setup(false, i != 0, STATUS_BUSY, SECTOR_SIZE))
        .collect();
    fises.push(Fis::RegisterD2h(d2h_good()));
    Ok(fises)
}

impl EmulatedDrive {
    /// Carry out a synchronous command and report it as complete.
    pub(super) fn run_sync(
        &mut self,
        slot: u8,
        tf: &Taskfile,
        proto: Protocol,
        data: &DataPath,
    ) -> Submission {
        let out = self.execute(tf, proto, data);
        Self::complete(slot, out.fises, out.bytes)
    }

    fn identify_bytes(&self) -> [u8; SECTOR_SIZE] {
        let words = identify::identify_device(&IdentifyParams {
            capacity: self.capacity_sectors(),
            serial: &self.serial,
            firmware: super::FIRMWARE_REVISION,
            model: &self.model,
            multiple_sectors: self.settings.multiple,
            write_cache: self.settings.write_cache,
            look_ahead: self.settings.look_ahead,
            transfer_mode: self.settings.transfer_mode,
            trim: !self.read_only,
            wwn: self.wwn,
            max_gen: 3,
            current_gen: self.link_gen,
            smart_enabled: self.smart.enabled,
            sense_reporting: self.sense_reporting,
        });
        identify::to_bytes(&words)
    }

    fn execute(&mut self, tf: &Taskfile, proto: Protocol, data: &DataPath) -> Outcome {
        use opcode::*;
        let capacity = self.capacity_sectors();
        match tf.command {
            IDENTIFY_DEVICE => pio_in(data, &self.identify_bytes(), SECTOR_SIZE, tf.device),
            READ_LOG_EXT | READ_LOG_DMA_EXT => match self.read_log(tf) {
                Some(pages) if proto == Protocol::Dma(Direction::In) => {
                    dma_in(data, &pages, tf.device)
                }
                Some(pages) => pio_in(data, &pages, SECTOR_SIZE, tf.device),
                None => only(d2h_abort(tf.device)),
            },
            WRITE_LOG_EXT | WRITE_LOG_DMA_EXT => {
                let first = ((tf.lba >> 8) & 0xff) | ((tf.lba >> 32) & 0xff00);
                self.write_host_log(tf, first, u64::from(tf.count), proto, data)
            }
            REQUEST_SENSE_DATA_EXT => {
                // ACS-3 7.37: sense key in LBA 19:16, ASC in 15:8, ASCQ in 7:0 (all zero: NO
                // SENSE); reading it consumes it.
                let (key, asc, ascq) = self.sense.take().unwrap_or((0, 0, 0));
                let lba = u64::from(key & 0x0f) << 16 | u64::from(asc) << 8 | u64::from(ascq);
                only(with_lba(d2h_good(), lba, true))
            }
            SET_FEATURES => only(self.set_features(tf)),
            SET_MULTIPLE_MODE => {
                let n = tf.count_low();
                // ACS-3 7.46: a power of two up to word 47's maximum; 0 disables.
                if n == 0 || (n.is_power_of_two() && n <= MAX_MULTIPLE_SECTORS) {
                    self.settings.multiple = n;
                    only(d2h_good())
                } else {
                    only(d2h_abort(tf.device))
                }
            }
            READ_NATIVE_MAX_ADDRESS | READ_NATIVE_MAX_ADDRESS_EXT => {
                let max = capacity - 1;
                let max = if tf.lba48 { max } else { max.min(LBA28_MAX) };
                only(with_lba(d2h_good(), max, tf.lba48))
            }
            READ_VERIFY_SECTORS | READ_VERIFY_SECTORS_EXT => {
                self.power = self.power.after_media_access();
                if range_ok(tf.lba, u64::from(tf.sector_count()), capacity, tf.lba48) {
                    only(d2h_good())
                } else {
                    only(d2h_error(error::IDNF))
                }
            }
            CHECK_POWER_MODE => {
                // Count FFh in Active or Idle, 00h in Standby (ACS-3 7.3; `super::power`).
                let mut d2h = d2h_good();
                d2h.count = u16::from(self.power.check_power_mode_count());
                only(d2h)
            }
            IDLE | IDLE_IMMEDIATE => {
                self.power = PowerState::Idle;
                only(d2h_good())
            }
            STANDBY | STANDBY_IMMEDIATE => {
                self.power = PowerState::Standby;
                only(d2h_good())
            }
            // SLEEP (ACS-3 7.51) completes; from then on only a reset is answered.
            SLEEP => {
                self.power = PowerState::Sleep;
                only(d2h_good())
            }
            SEEK => {
                self.power = self.power.after_media_access();
                only(d2h_good())
            }
            EXECUTE_DEVICE_DIAGNOSTIC => only(signature(true)),
            SMART => self.smart(tf, data),
            // No overlay to change: DCO IDENTIFY reports what the drive offers; DCO SET,
            // RESTORE and FREEZE LOCK abort (the capacity never changes).
            DEVICE_CONFIGURATION_OVERLAY if tf.feature() == dco::IDENTIFY => {
                let page = crate::ata::dco::dco_identify(&crate::ata::dco::DcoParams {
                    capacity,
                    trim: !self.read_only,
                });
                pio_in(data, &page, SECTOR_SIZE, tf.device)
            }
            // NOP (ACS-3 7.17) and DEVICE RESET (an ATAPI command, 7.9) always abort on an
            // ATA device; so does everything this drive does not implement.
            _ => only(d2h_abort(tf.device)),
        }
    }

    /// READ LOG (DMA) EXT (ACS-3 7.24): LBA 7:0 the log address, LBA 15:8 and 47:40 the first
    /// page, Count the number of pages. None (ABRT) for an unsupported log or page range.
    /// Reading the NCQ Command Error log leaves the NCQ error state; reading the Phy Event
    /// Counters with Features bit 0 set resets them (SATA 3.x 13.7.6).
    fn read_log(&mut self, tf: &Taskfile) -> Option<Vec<u8>> {
        let log_address = tf.lba as u8;
        let first = ((tf.lba >> 8) & 0xff) | ((tf.lba >> 32) & 0xff00);
        let pages = u64::from(tf.count);
        let total = u64::from(log::log_pages(log_address));
        if pages == 0 || first.checked_add(pages).is_none_or(|end| end > total) {
            return None;
        }
        let mut out = Vec::with_capacity(pages as usize * SECTOR_SIZE);
        for page in first..first + pages {
            let p = match log_address {
                address::DIRECTORY => log::directory(),
                address::NCQ_COMMAND_ERROR => {
                    let err = self.ncq_error.take();
                    log::ncq_command_error(err.as_ref())
                }
                address::EXT_COMPREHENSIVE_ERROR => ata_smart::ext_comprehensive_error_log(),
                address::EXT_SELF_TEST => ata_smart::ext_self_test_log(self.smart.log()),
                address::SATA_PHY_EVENT_COUNTERS => {
                    let p = stats_log::phy_event_counters(self.smart.comresets);
                    if tf.features & 1 != 0 {
                        self.smart.comresets = 0;
                    }
                    p
                }
                _ => self.shared_log_page(log_address, page)?,
            };
            out.extend_from_slice(&p);
        }
        Some(out)
    }

    /// A page of a log both READ LOG EXT and SMART READ LOG read: device statistics, the
    /// IDENTIFY DEVICE data log, the host-specific logs.
    fn shared_log_page(&self, log_address: u8, page: u64) -> Option<LogPage> {
        match log_address {
            address::DEVICE_STATISTICS => {
                stats_log::device_statistics(u8::try_from(page).ok()?, &self.general_statistics())
            }
            address::IDENTIFY_DEVICE_DATA => log::identify_device_data(
                u8::try_from(page).ok()?,
                &self.identify_bytes(),
                self.capacity_sectors(),
            ),
            l if address::HOST_SPECIFIC.contains(&l) => {
                self.smart.host_log(l, u16::try_from(page).ok()?)
            }
            _ => None,
        }
    }

    fn general_statistics(&self) -> stats_log::GeneralStatistics {
        stats_log::GeneralStatistics {
            power_on_resets: 1,
            power_on_hours: self.smart.power_on_hours(),
            sectors_written: self.smart.sectors_written,
            write_commands: self.smart.write_commands,
            sectors_read: self.smart.sectors_read,
            read_commands: self.smart.read_commands,
            timestamp_ms: u64::try_from(self.smart.uptime().as_millis()).unwrap_or(u64::MAX),
            temperature: super::smart::TEMPERATURE_C,
        }
    }

    /// WRITE LOG (DMA) EXT and SMART WRITE LOG: only the host-specific logs (80h-9Fh) are
    /// writable; `first` page, `pages` pages.
    fn write_host_log(
        &mut self,
        tf: &Taskfile,
        first: u64,
        pages: u64,
        proto: Protocol,
        data: &DataPath,
    ) -> Outcome {
        let log_address = tf.lba as u8;
        let writable = address::HOST_SPECIFIC.contains(&log_address)
            && pages != 0
            && first
                .checked_add(pages)
                .is_some_and(|end| end <= u64::from(log::HOST_SPECIFIC_PAGES));
        if !writable {
            return only(d2h_abort(tf.device));
        }
        let mut buf = vec![0u8; pages as usize * SECTOR_SIZE];
        let fises = if proto == Protocol::Dma(Direction::Out) {
            if data.read_at(0, &mut buf).is_err() {
                return only(d2h_abort(tf.device));
            }
            vec![Fis::RegisterD2h(d2h_good())]
        } else {
            match pio_out(data, &mut buf, tf.device) {
                Ok(f) => f,
                Err(out) => return out,
            }
        };
        for (i, chunk) in buf.chunks_exact(SECTOR_SIZE).enumerate() {
            let mut page = [0u8; SECTOR_SIZE];
            page.copy_from_slice(chunk);
            self.smart
                .write_host_log(log_address, (first + i as u64) as u16, &page);
        }
        Outcome {
            fises,
            bytes: buf.len() as u32,
        }
    }

    /// SET FEATURES (ACS-3 7.45): Features selects the subcommand.
    fn set_features(&mut self, tf: &Taskfile) -> RegisterD2h {
        match tf.feature() {
            0x02 => self.settings.write_cache = true,
            // 82h (disable the write cache) flushes first: a media command (`super::media`).
            0x03 => match TransferMode::from_count(tf.count_low()) {
                Some(TransferMode::Pio(_)) => {}
                Some(mode) => self.settings.transfer_mode = mode,
                None => return d2h_abort(tf.device),
            },
            0xaa => self.settings.look_ahead = true,
            0x55 => self.settings.look_ahead = false,
            // Reverting to power-on defaults enabled/disabled: nothing to revert here.
            0x66 | 0xcc => {}
            // C3h: enable (Count bit 0 set) or disable sense data reporting (ACS-3 7.45.20).
            0xc3 => self.sense_reporting = tf.count_low() & 1 != 0,
            _ => return d2h_abort(tf.device),
        }
        d2h_good()
    }

    /// SMART (ACS-3 7.48): requires the 4Fh/C2h signature in LBA mid/high. With SMART
    /// disabled every subcommand but ENABLE OPERATIONS aborts (ACS-3 7.48.1).
    fn smart(&mut self, tf: &Taskfile, data: &DataPath) -> Outcome {
        if tf.lba & 0xff_ff00 != SMART_SIGNATURE {
            return only(d2h_abort(tf.device));
        }
        let capacity = self.capacity_sectors();
        let sub = tf.feature();
        if !self.smart.enabled && sub != smart::ENABLE_OPERATIONS {
            return only(d2h_abort(tf.device));
        }
        match sub {
            smart::RETURN_STATUS => {
                // LBA mid/high 4Fh/C2h: no threshold exceeded (no attribute ever degrades).
                only(with_lba(
                    d2h_good(),
                    (tf.lba & 0xff) | SMART_SIGNATURE,
                    false,
                ))
            }
            smart::READ_DATA => {
                let page =
                    ata_smart::read_data(&self.smart.counters(), &self.smart.status(capacity));
                pio_in(data, &page, SECTOR_SIZE, tf.device)
            }
            smart::READ_THRESHOLDS => {
                pio_in(data, &ata_smart::read_thresholds(), SECTOR_SIZE, tf.device)
            }
            smart::ENABLE_OPERATIONS => {
                self.smart.enabled = true;
                only(d2h_good())
            }
            smart::DISABLE_OPERATIONS => {
                self.smart.enabled = false;
                only(d2h_good())
            }
            // Count F1h enables attribute autosave, 00h disables it (ACS-3 7.48.3).
            smart::ENABLE_DISABLE_AUTOSAVE => match tf.count_low() {
                0xf1 => {
                    self.smart.autosave = true;
                    only(d2h_good())
                }
                0x00 => {
                    self.smart.autosave = false;
                    only(d2h_good())
                }
                _ => only(d2h_abort(tf.device)),
            },
            smart::EXECUTE_OFFLINE_IMMEDIATE => {
                if !self.smart.execute_offline(tf.lba as u8, capacity) {
                    return only(d2h_abort(tf.device));
                }
                // The test's first step goes to the engine now; the rest follow on the
                // event loop (`poll_completions`).
                self.advance_self_test();
                only(d2h_good())
            }
            // SMART READ LOG (ACS-3 7.48.8): LBA 7:0 the log, Count the pages, from page 0.
            smart::READ_LOG => {
                let log_address = tf.lba as u8;
                let pages = u64::from(tf.count_low());
                let total = u64::from(log::smart_log_pages(log_address));
                if pages == 0 || pages > total {
                    return only(d2h_abort(tf.device));
                }
                let mut out = Vec::with_capacity(pages as usize * SECTOR_SIZE);
                for page in 0..pages {
                    let p = match log_address {
                        address::DIRECTORY => log::smart_directory(),
                        address::SUMMARY_ERROR => ata_smart::summary_error_log(),
                        address::SMART_SELF_TEST => {
                            ata_smart::smart_self_test_log(self.smart.log())
                        }
                        l => match self.shared_log_page(l, page) {
                            Some(p) => p,
                            None => return only(d2h_abort(tf.device)),
                        },
                    };
                    out.extend_from_slice(&p);
                }
                pio_in(data, &out, SECTOR_SIZE, tf.device)
            }
            smart::WRITE_LOG => {
                let pages = u64::from(tf.count_low());
                self.write_host_log(tf, 0, pages, Protocol::Pio(Direction::Out), data)
            }
            _ => only(d2h_abort(tf.device)),
        }
    }
}
