//! Units people type on the command line: durations (`500ms`, `30s`, `2min`, `1.5h`) and
//! sizes (`4KiB`, `512MiB`, `1GiB`). Pure parsers, used as clap value parsers, so a bad value
//! is one line naming the flag and the value.

use std::time::Duration;

/// Parse a duration with a unit: `us`/`µs`, `ms`, `s`/`sec`, `m`/`min`, `h`. Fractions are
/// allowed (`1.5s`). A bare number is refused (is `30` seconds or milliseconds?).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(format!(
            "'{s}' is not a duration: expected a number and a unit, e.g. 30s, 500ms, 2min"
        ));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a number"))?;
    let us_per = match unit {
        "us" | "µs" | "usec" => 1.0,
        "ms" | "msec" => 1e3,
        "s" | "sec" | "secs" => 1e6,
        "m" | "min" | "mins" => 60e6,
        "h" | "hour" | "hours" => 3600e6,
        "" => return Err(format!("'{s}' has no unit: write e.g. {num}s or {num}ms")),
        other => {
            return Err(format!(
                "unknown time unit '{other}' (use us, ms, s, min or h)"
            ))
        }
    };
    let us = v * us_per;
    if !us.is_finite() || us > 1e15 {
        return Err(format!("'{s}' is too long"));
    }
    Ok(Duration::from_micros(us.round() as u64))
}

/// Like [`parse_duration`], refusing zero.
pub fn parse_nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("'{s}' is zero: give a positive duration"));
    }
    Ok(d)
}

/// Parse a size: `B`, `KiB`, `MiB`, `GiB`, `TiB` (also `K`, `M`, `G`, `KB`... as binary
/// multiples, as `damo` and the kernel's sysfs do). A bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' is not a size: expected e.g. 512MiB or 1GiB"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let b = v * mult as f64;
    if !b.is_finite() || b > u64::MAX as f64 / 2.0 {
        return Err(format!("'{s}' is too large"));
    }
    Ok(b.round() as u64)
}

/// `1.5 GiB`, `640 KiB`, `12 B`: for people.
pub fn fmt_bytes(b: u64) -> String {
    fmt_bytes_f(b as f64)
}

pub fn fmt_bytes_f(b: f64) -> String {
    let neg = b < 0.0;
    let a = b.abs();
    let s = if a >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", a / (1u64 << 30) as f64)
    } else if a >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", a / (1u64 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{:.1} KiB", a / 1024.0)
    } else {
        format!("{a:.0} B")
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// `1.2 s`, `350 ms`, `2 min 5 s`.
pub fn fmt_duration_us(us: u64) -> String {
    if us >= 120_000_000 {
        format!(
            "{} min {} s",
            us / 60_000_000,
            (us % 60_000_000) / 1_000_000
        )
    } else if us >= 1_000_000 {
        format!("{:.1} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{us} us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2 m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("garbage")
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 parsecs")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("1.2.3s")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_nonzero_duration("0s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5 MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(fmt_bytes(1 << 30), "1.00 GiB");
        assert_eq!(fmt_bytes(3 << 19), "1.5 MiB");
    }
}
