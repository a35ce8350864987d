//! Units on the command line: durations (`500ms`, `30s`, `2min`, `1.5h`) and sizes (`4KiB`,
//! `512MiB`, `1GiB`), parsed by `schemes::units` (the parser policy files use, in its
//! command-line dialect), as clap value parsers, so a bad value is one line naming the flag
//! and the value; and the formatting of bytes and times for people.

use schemes::units::{self, Dialect};
use std::time::Duration;

/// Parse a duration with a unit: `us`/`µs`, `ms`, `s`/`sec`, `min`, `h`. Fractions are
/// allowed (`1.5s`). A bare number is refused (is `30` seconds or milliseconds?), and so is
/// `m` (minutes, or MiB?).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    units::parse_time_us(s, Dialect::Cli).map(Duration::from_micros)
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
/// multiples, as `damo` and the kernel's sysfs do; any case, but not `m`). A bare number is
/// bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    units::parse_size(s, Dialect::Cli)
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
        // `m` is refused: minutes or MiB? (It meant minutes here and MiB in sizes.)
        let e = parse_duration("2 m").unwrap_err();
        assert!(e.contains("ambiguous") && e.contains("2min"), "{e}");
        assert_eq!(parse_duration("2 mins").unwrap(), Duration::from_secs(120));
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

    /// A flag's value parser, as a number of µs or bytes.
    type Parse = fn(&str) -> Result<u64, String>;

    /// The duration and size flags (from src/cli.rs), each with its parser.
    fn unit_flags() -> Vec<(String, Parse)> {
        let cli =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli.rs")).unwrap();
        let lines: Vec<&str> = cli.lines().collect();
        let mut out: Vec<(String, Parse)> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let parse: Parse = if l.contains("value_parser = parse_nonzero_duration") {
                |v| parse_nonzero_duration(v).map(|d| d.as_micros() as u64)
            } else if l.contains("value_parser = parse_size") {
                parse_size
            } else {
                continue;
            };
            let name = match l.split("long = \"").nth(1) {
                Some(rest) => rest.split('"').next().unwrap().to_string(),
                None => {
                    let field = lines[i + 1].trim().trim_start_matches("pub ");
                    field.split(':').next().unwrap().replace('_', "-")
                }
            };
            if let Some(d) = l.split("default_value = \"").nth(1) {
                let d = d.split('"').next().unwrap();
                parse(d).unwrap_or_else(|e| panic!("src/cli.rs --{name} default {d:?}: {e}"));
            }
            out.push((format!("--{name}"), parse));
        }
        out
    }

    /// Every duration and size a command-line example in README.md, docs/ or deploy/ gives a
    /// flag still parses (none uses `m`).
    #[test]
    fn every_documented_flag_value_parses() {
        let flags = unit_flags();
        for f in [
            "--for",
            "--sample",
            "--aggr",
            "--update",
            "--every",
            "--sim-size",
            "--size",
        ] {
            assert!(
                flags.iter().any(|(n, _)| n == f),
                "{f} not found in src/cli.rs"
            );
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("README.md")];
        for dir in ["docs", "deploy", "deploy/k8s"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() && std::fs::read_to_string(&p).is_ok() {
                    files.push(p);
                }
            }
        }
        let mut checked = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let words: Vec<&str> = text
                .split(|c: char| c.is_whitespace() || "`|\"',()".contains(c))
                .filter(|w| !w.is_empty())
                .collect();
            for (i, w) in words.iter().enumerate() {
                let (flag, inline) = match w.split_once('=') {
                    Some((f, v)) => (f, Some(v)),
                    None => (*w, None),
                };
                let Some((_, parse)) = flags.iter().find(|(n, _)| n == flag) else {
                    continue;
                };
                let Some(v) = inline.or(words.get(i + 1).copied()) else {
                    continue;
                };
                if !v.starts_with(|c: char| c.is_ascii_digit()) {
                    continue; // a synopsis (`--for <DURATION>`), prose, or `--for garbage`
                }
                let v = v.trim_end_matches(['.', ';', ':', ']']);
                parse(v).unwrap_or_else(|e| panic!("{}: {flag} {v}: {e}", f.display()));
                checked += 1;
            }
        }
        assert!(checked >= 5, "only {checked} documented values found");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5 MiB").unwrap(), 3 << 19);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("2mb").unwrap(), 2 << 20);
        let e = parse_size("2m").unwrap_err();
        assert!(e.contains("ambiguous") && e.contains("2MiB"), "{e}");
        // Huge: too large, with the largest; not an unknown unit `e30`.
        let e = parse_size("1e30").unwrap_err();
        assert!(e.contains("too large (the largest is 8 EiB)"), "{e}");
        let e = parse_size("99999999999999999999999").unwrap_err();
        assert!(e.contains("too large (the largest is 8 EiB)"), "{e}");
        let e = parse_duration("1e30s").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert_eq!(fmt_bytes(1 << 30), "1.00 GiB");
        assert_eq!(fmt_bytes(3 << 19), "1.5 MiB");
    }
}
