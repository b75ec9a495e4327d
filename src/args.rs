//! Values of satavm's options as clap parses them (`--cpus`, `--memory`, `on|off`,
//! `--ncq-aggregation`), and the hint for `--trace-human FILE`. Part of the binary.

use std::ffi::OsString;
use std::time::Duration;

use satavm::ahci::sdb_aggregation::AggregationMode;
use satavm::vmm;
use satavm::vmm::storage::RegisterMode;

/// `--cpus`: 1 to 32, one message for every number out of range.
pub fn parse_cpus(s: &str) -> Result<u8, String> {
    let out_of_range = || format!("must be 1 to {}, got {s}", vmm::MAX_CPUS);
    let n: u64 = s.trim().parse().map_err(|_| {
        if s.trim().bytes().all(|b| b.is_ascii_digit()) && !s.trim().is_empty() {
            out_of_range()
        } else {
            format!(
                "expected a number of vCPUs (1 to {}), got {s:?}",
                vmm::MAX_CPUS
            )
        }
    })?;
    match u8::try_from(n) {
        Ok(n) if (1..=vmm::MAX_CPUS).contains(&n) => Ok(n),
        _ => Err(out_of_range()),
    }
}

/// `--memory`: MiB, or a number with a binary suffix (K, M, G, T; KiB/MiB/GiB/TiB and
/// lower case too; a fraction like 1.5G is fine when it comes to whole bytes), as bytes.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits_end);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 20,
        "k" | "kb" | "kib" => 10,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "b" => 0,
        _ => {
            return Err(format!(
                "{s:?}: expected MiB or a size with a suffix K, M, G or T (e.g. 512, 512M, 2G)"
            ))
        }
    };
    let too_big = || format!("{s:?} is too large");
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("{s:?}: expected a size such as 512, 512M or 2G"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_big())?
    };
    let mut bytes = whole
        .checked_shl(shift)
        .filter(|b| b >> shift == whole)
        .ok_or_else(too_big)?;
    if !frac.is_empty() {
        // Exactly: frac / 10^len << shift must be whole bytes.
        let len = u32::try_from(frac.len()).map_err(|_| too_big())?;
        let denom = 10u128.checked_pow(len).ok_or_else(too_big)?;
        let num = frac.parse::<u128>().map_err(|_| too_big())? << shift;
        if num % denom != 0 {
            return Err(format!("{s:?} is not a whole number of bytes"));
        }
        let extra = u64::try_from(num / denom).map_err(|_| too_big())?;
        bytes = bytes.checked_add(extra).ok_or_else(too_big)?;
    }
    Ok(bytes)
}

/// `on` or `off`.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {s:?}")),
    }
}

/// `--registers mapped|trap`.
pub fn parse_registers(s: &str) -> Result<RegisterMode, String> {
    match s {
        "mapped" => Ok(RegisterMode::Mapped),
        "trap" => Ok(RegisterMode::Trap),
        _ => Err(format!("expected mapped or trap, got {s:?}")),
    }
}

/// The default cap of the aggregation window.
const AGGREGATION_MAX_WINDOW: Duration = Duration::from_millis(4);

/// `--ncq-aggregation auto|auto:US|off`.
pub fn parse_aggregation(s: &str) -> Result<AggregationMode, String> {
    match s.split_once(':') {
        None if s == "off" => Ok(AggregationMode::Off),
        None if s == "auto" => Ok(AggregationMode::Auto {
            max_window: AGGREGATION_MAX_WINDOW,
        }),
        Some(("auto", us)) => match us.parse::<u64>() {
            Ok(0) => Ok(AggregationMode::Off),
            Ok(us) if us <= 1_000_000 => Ok(AggregationMode::Auto {
                max_window: Duration::from_micros(us),
            }),
            _ => Err(format!("{us}: a window in microseconds, at most 1000000")),
        },
        _ => Err(format!("{s}: expected auto, auto:MICROSECONDS or off")),
    }
}

/// `--trace-human FILE` (with a space): clap reads FILE as an argument of its own.
pub fn trace_human_hint(args: &[OsString]) -> Option<String> {
    let at = args.iter().position(|a| a == "--trace-human")?;
    let next = args.get(at + 1)?.to_string_lossy();
    (!next.starts_with('-')).then(|| {
        format!(
            "hint: --trace-human takes its file after `=`: --trace-human={next} (alone, \
             --trace-human writes the text trace to stderr)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_mib_and_suffixes_and_refuses_overflow() {
        assert_eq!(parse_memory("512"), Ok(512 << 20));
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("1g"), Ok(1 << 30));
        assert_eq!(parse_memory("1.5G"), Ok(3 << 29));
        assert_eq!(parse_memory("65536K"), Ok(64 << 20));
        assert_eq!(parse_memory("2T"), Ok(2 << 40));
        // 2^44 + 64 MiB used to wrap to 64 MiB.
        let e = parse_memory(&format!("{}", (1u64 << 44) + 64)).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(parse_memory("99999999999999999999G")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_memory("16777216T").unwrap_err().contains("too large"));
        assert!(parse_memory("1.0000000001K")
            .unwrap_err()
            .contains("whole number"));
        for bad in ["", "M", "1X", "1..5G", "-1", "1 G"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_out_of_range_get_one_message() {
        assert_eq!(parse_cpus("4"), Ok(4));
        for n in ["0", "33", "256", "99999999999999999999999"] {
            assert_eq!(
                parse_cpus(n),
                Err(format!("must be 1 to 32, got {n}")),
                "{n}"
            );
        }
        assert!(parse_cpus("two").unwrap_err().contains("expected a number"));
    }

    #[test]
    fn a_space_after_trace_human_gets_a_hint() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let h = trace_human_hint(&args(&["satavm", "--trace-human", "t.txt"])).unwrap();
        assert!(h.contains("--trace-human=t.txt"), "{h}");
        assert_eq!(
            trace_human_hint(&args(&["satavm", "--trace-human", "--strict"])),
            None
        );
        assert_eq!(trace_human_hint(&args(&["satavm", "--trace-human"])), None);
    }
}
