//! Time: the TSC, calibrated against PIT channel 2 (gated through port 0x61, as Linux's
//! pit_calibrate_tsc does), and deadlines for bounded polling.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::hw::{inb, outb};

/// TSC ticks per millisecond; a guess until `calibrate` succeeds.
static TSC_PER_MS: AtomicU64 = AtomicU64::new(1_000_000);

/// PIT input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
const PIT_CH2: u16 = 0x42;
const PIT_CMD: u16 = 0x43;
/// Port B (NMI status and control): bit 0 gate of channel 2, bit 1 speaker, bit 5 OUT2.
const PORT_B: u16 = 0x61;

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the counter.
    unsafe { asm!("lfence; rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Measure the TSC rate over 50 ms of PIT channel 2 (mode 0, one-shot). Returns the TSC rate in
/// kHz, or None if the PIT never signalled terminal count.
pub fn calibrate() -> Option<u64> {
    const MS: u64 = 50;
    let count = (PIT_HZ * MS / 1000) as u16;
    // Gate low, speaker off; channel 2, lobyte/hibyte, mode 0, binary.
    outb(PORT_B, inb(PORT_B) & !0x03);
    outb(PIT_CMD, 0b1011_0000);
    outb(PIT_CH2, count as u8);
    outb(PIT_CH2, (count >> 8) as u8);
    // Gate high starts the count; OUT2 goes high at terminal count.
    outb(PORT_B, (inb(PORT_B) & !0x02) | 0x01);
    let start = rdtsc();
    let mut ok = false;
    // Bounded by iterations, not time: time is what we are measuring.
    for _ in 0..50_000_000u64 {
        if inb(PORT_B) & 0x20 != 0 {
            ok = true;
            break;
        }
    }
    let end = rdtsc();
    outb(PORT_B, inb(PORT_B) & !0x03);
    if !ok || end <= start {
        return None;
    }
    let per_ms = (end - start) / MS;
    if per_ms == 0 {
        return None;
    }
    TSC_PER_MS.store(per_ms, Ordering::Relaxed);
    Some(per_ms)
}

/// TSC ticks per millisecond.
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed).max(1)
}

/// Microseconds between two TSC readings.
pub fn us_between(start: u64, end: u64) -> u64 {
    end.saturating_sub(start).saturating_mul(1000) / tsc_per_ms()
}

/// Busy-wait `ms` milliseconds.
pub fn delay_ms(ms: u64) {
    let end = rdtsc().saturating_add(ms.saturating_mul(tsc_per_ms()));
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Poll `cond` until it holds or `ms` milliseconds pass; true if it held.
pub fn wait_for(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = rdtsc().saturating_add(ms.saturating_mul(tsc_per_ms()));
    loop {
        if cond() {
            return true;
        }
        if rdtsc() >= end {
            return cond();
        }
        core::hint::spin_loop();
    }
}
