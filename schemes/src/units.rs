//! Units people read: sizes (`4 KiB`, `2 MiB`, `1.5 GiB`, plain integers are bytes), times
//! (`200 ms`, `30 s`, `5 min`), percentages (`50%`) and basis points (`25 bp`).
//!
//! A policy value is written either as a number or as a string with a unit; [`Quantity`] is
//! that raw value, and the functions here turn it into the number a field needs, or into a
//! message that the policy parser places at the value's line and column.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A raw numeric value from a policy file: a number or a string carrying a unit.
#[derive(Clone, Debug, PartialEq)]
pub enum Quantity {
    Int(i128),
    Float(f64),
    Str(String),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string with a unit, like \"4 KiB\" or \"200 ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
                Ok(Quantity::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
                Ok(Quantity::Int(v.min(i128::MAX as u128) as i128))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Int(v) => write!(f, "{v}"),
            Quantity::Float(v) => write!(f, "{v}"),
            Quantity::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// Where a value comes from. Both read the same units with the same parser; flags also take
/// the longer and case-free spellings they always took (`sec`, `hours`, `mb`, `KB`), and
/// their bounds are the ones the binary's stages were built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Policy files and the agent config (RON).
    Policy,
    /// Command-line flags.
    Cli,
}

/// One unit: its name (the spelling error messages list), the other spellings policies
/// accept, the spellings only flags accept, and how many base units (bytes, µs) it is.
struct Unit {
    name: &'static str,
    also: &'static [&'static str],
    cli: &'static [&'static str],
    mult: u64,
}

const fn unit(
    name: &'static str,
    also: &'static [&'static str],
    cli: &'static [&'static str],
    mult: u64,
) -> Unit {
    Unit {
        name,
        also,
        cli,
        mult,
    }
}

/// What a size or time is, for messages, with its units and its bounds per dialect.
struct Dim {
    noun: &'static str,
    units: &'static [Unit],
    /// Flags compare spellings ignoring ASCII case.
    cli_case_free: bool,
    /// Examples of the syntax, for messages.
    examples: &'static str,
    /// (largest value in base units, said for people) per dialect.
    policy_max: (u64, &'static str),
    cli_max: (u64, &'static str),
    too_large: &'static str,
}

/// Sizes: B, KiB, MiB, GiB, TiB (binary; K, M, G, T are the same). Lowercase `m` is refused.
const SIZE: Dim = Dim {
    noun: "size",
    units: &[
        unit("B", &[], &[], 1),
        unit("KiB", &["K"], &["KB"], 1 << 10),
        unit("MiB", &["M"], &["MB"], 1 << 20),
        unit("GiB", &["G"], &["GB"], 1 << 30),
        unit("TiB", &["T"], &["TB"], 1 << 40),
    ],
    cli_case_free: true,
    examples: "4096, 512MiB or 1.5GiB",
    policy_max: (u64::MAX, "16 EiB - 1 byte"),
    // The binary's sizes (simulated address spaces, workloads) are added to addresses.
    cli_max: (u64::MAX / 2, "8 EiB"),
    too_large: "too large",
};

/// Times: us, ms, s, min, h. `m` is refused (it meant minutes here and MiB there).
const TIME: Dim = Dim {
    noun: "time",
    units: &[
        unit("us", &["µs"], &["usec"], 1),
        unit("ms", &[], &["msec"], 1_000),
        unit("s", &[], &["sec", "secs"], 1_000_000),
        unit("min", &[], &["mins"], 60_000_000),
        unit("h", &[], &["hour", "hours"], 3_600_000_000),
    ],
    cli_case_free: false,
    examples: "30s, 500ms or 2min",
    policy_max: (u64::MAX, "about 584542 years"),
    cli_max: (1_000_000_000_000_000, "1000000000s, about 31 years"),
    too_large: "too long",
};

impl Dim {
    fn find(&self, unit: &str, dialect: Dialect) -> Option<&Unit> {
        self.units.iter().find(|u| {
            let policy = std::iter::once(&u.name).chain(u.also);
            match dialect {
                Dialect::Policy => policy.clone().any(|x| *x == unit),
                Dialect::Cli if self.cli_case_free => {
                    policy.chain(u.cli).any(|x| x.eq_ignore_ascii_case(unit))
                }
                Dialect::Cli => policy.chain(u.cli).any(|x| *x == unit),
            }
        })
    }

    fn names(&self) -> String {
        let names: Vec<_> = self.units.iter().map(|u| u.name).collect();
        names.join(", ")
    }

    /// Parse `"<number><unit>"` (spaces allowed between) into base units. `default_unit`
    /// is taken when no unit is written (`None`: a unit is required).
    fn parse(&self, s: &str, dialect: Dialect, default_unit: Option<u64>) -> Result<u64, String> {
        let noun = self.noun;
        let n = Number::lex(s).map_err(|e| match e {
            LexError::NoNumber => format!(
                "{s:?} is not a {}: expected a number and a unit, e.g. {}",
                if noun == "time" { "duration" } else { noun },
                self.examples
            ),
            LexError::BadNumber(num) => format!("{num:?} is not a number (in {s:?})"),
        })?;
        let num = n.text;
        let mult = match n.unit {
            "m" => {
                let (write, meaning) = if noun == "time" {
                    ("min", "minutes")
                } else {
                    ("MiB", "mebibytes")
                };
                return Err(format!(
                    "unit `m` in {s:?} is ambiguous (minutes or MiB?): write \"{num}{write}\" for {meaning}"
                ));
            }
            "" => default_unit.ok_or_else(|| {
                format!(
                    "{s:?} has no unit: a {noun} needs a unit, e.g. {num}s or {num}ms ({})",
                    self.names()
                )
            })?,
            u => {
                self.find(u, dialect)
                    .ok_or_else(|| {
                        format!(
                            "unknown {noun} unit `{u}` in {s:?}, expected one of {}",
                            self.names()
                        )
                    })?
                    .mult
            }
        };
        if n.value < 0.0 {
            return Err(format!("negative {noun} {s:?}"));
        }
        let (max, said) = match dialect {
            Dialect::Policy => self.policy_max,
            Dialect::Cli => self.cli_max,
        };
        let x = n.value * mult as f64;
        if !x.is_finite() || x > max as f64 || x >= u64::MAX as f64 {
            return Err(format!(
                "{noun} {s:?} is {} (the largest is {said})",
                self.too_large
            ));
        }
        if n.exponent {
            return Err(format!(
                "{noun} {s:?}: exponents are not accepted, write the digits (e.g. {})",
                self.examples
            ));
        }
        if n.unit.is_empty() && n.value.fract() != 0.0 {
            return Err(format!("{noun} {s:?} is not a whole number of bytes"));
        }
        Ok(x.round() as u64)
    }
}

/// A number as written before its unit: digits, `.`, `_` separators, a sign, and an exponent
/// (`1e30`), which is lexed only to say what is wrong with it.
struct Number<'a> {
    value: f64,
    text: &'a str,
    exponent: bool,
    unit: &'a str,
}

enum LexError {
    NoNumber,
    BadNumber(String),
}

impl<'a> Number<'a> {
    /// A number without an exponent, for values that are not sizes or times.
    fn plain(s: &'a str) -> Result<Self, String> {
        let n = Number::lex(s).map_err(|e| match e {
            LexError::NoNumber => format!("expected a number in {s:?}"),
            LexError::BadNumber(num) => format!("{num:?} is not a number (in {s:?})"),
        })?;
        if n.exponent {
            return Err(format!(
                "{s:?}: exponents are not accepted, write the digits"
            ));
        }
        Ok(n)
    }

    fn lex(s: &'a str) -> Result<Self, LexError> {
        let s = s.trim();
        let b = s.as_bytes();
        let mantissa = |c: u8| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'_');
        let mut end = b.iter().position(|c| !mantissa(*c)).unwrap_or(b.len());
        let mut exponent = false;
        if end > 0 && matches!(b.get(end), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
            let digits = b[end + 1 + sign..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits > 0 {
                exponent = true;
                end += 1 + sign + digits;
            }
        }
        let (text, unit) = s.split_at(end);
        if !text.bytes().any(|c| c.is_ascii_digit()) {
            return Err(LexError::NoNumber);
        }
        let value: f64 = text
            .replace('_', "")
            .parse()
            .map_err(|_| LexError::BadNumber(text.to_string()))?;
        Ok(Number {
            value,
            text,
            exponent,
            unit: unit.trim(),
        })
    }
}

/// A size in bytes, as `"<n> <unit>"` (B, KiB, MiB, GiB, TiB; K, M, G, T the same; flags also
/// take KB.. and any case) or a plain whole number of bytes.
pub fn parse_size(s: &str, dialect: Dialect) -> Result<u64, String> {
    SIZE.parse(s, dialect, Some(1))
}

/// A time in µs, as `"<n> <unit>"` (us, ms, s, min, h; flags also take usec, msec, sec,
/// secs, mins, hour, hours). A bare number is refused: its unit would be a guess.
pub fn parse_time_us(s: &str, dialect: Dialect) -> Result<u64, String> {
    TIME.parse(s, dialect, None)
}

/// A whole number from a policy: `Some` for an integer in `0..=max`, `None` for a string
/// (the caller parses its unit), else why not.
fn int_value(q: &Quantity, what: &str, max: u64) -> Result<Option<u64>, String> {
    let bytes = if what == "size" { " bytes" } else { "" };
    match q {
        Quantity::Int(v) if *v < 0 => Err(format!("negative {what} {v}")),
        Quantity::Int(v) => u64::try_from(*v)
            .ok()
            .filter(|v| *v <= max)
            .map(Some)
            .ok_or_else(|| format!("{what} {v} is too large (the largest is {max}{bytes})")),
        Quantity::Float(v) if *v < 0.0 => Err(format!("negative {what} {v}")),
        // A number this large parses as a float (`1e30`, `99999999999999999999999`).
        Quantity::Float(v) if *v >= max as f64 => {
            Err(format!("{what} is too large (the largest is {max}{bytes})"))
        }
        Quantity::Float(v) => Err(format!("{what} {v} needs a unit or must be a whole number")),
        Quantity::Str(_) => Ok(None),
    }
}

/// A whole number in `0..=max` without a unit (region counts, weights, user inputs).
pub fn whole(q: &Quantity, max: u64) -> Result<u64, String> {
    match q {
        Quantity::Int(_) => Ok(int_value(q, "value", max)?.unwrap_or_default()),
        Quantity::Float(v) if *v >= max as f64 => {
            Err(format!("value is too large (the largest is {max})"))
        }
        other => Err(format!("expected a whole number, got {other}")),
    }
}

/// A size in bytes: an integer (bytes) or `"<n> <unit>"` with B, KiB, MiB, GiB, TiB (K, M, G,
/// T are the same binary units).
pub fn size(q: &Quantity) -> Result<u64, String> {
    match q {
        Quantity::Str(s) => parse_size(s, Dialect::Policy),
        _ => Ok(int_value(q, "size", u64::MAX)?.unwrap_or_default()),
    }
}

/// A time in µs: `"<n> <unit>"` with us, ms, s, min, h. A bare number is refused: its unit
/// would be a guess.
pub fn time_us(q: &Quantity) -> Result<u64, String> {
    match q {
        Quantity::Str(s) => parse_time_us(s, Dialect::Policy),
        Quantity::Int(v) if *v < 0 => Err(format!("negative time {v}")),
        Quantity::Float(v) if *v < 0.0 => Err(format!("negative time {v}")),
        other => Err(format!(
            "time {other} needs a unit, like \"{other} ms\" ({})",
            TIME.names()
        )),
    }
}

/// A fraction in basis points (1/10 000): an integer (basis points), `"40%"` or `"4000 bp"`.
pub fn basis_points(q: &Quantity) -> Result<u64, String> {
    fraction(q, 10_000, "bp")
}

/// A fraction in per-mille: an integer (‰), `"50%"` or `"500‰"`.
pub fn permille(q: &Quantity) -> Result<u64, String> {
    fraction(q, 1_000, "‰")
}

fn fraction(q: &Quantity, scale: u64, native: &str) -> Result<u64, String> {
    let s = match q {
        Quantity::Str(s) => s,
        _ => return Ok(int_value(q, "value", u64::MAX)?.unwrap_or_default()),
    };
    let n = Number::plain(s)?;
    let mult = match n.unit {
        "%" => scale as f64 / 100.0,
        u if u == native || (native == "‰" && u == "permille") => 1.0,
        "" => 1.0,
        u => {
            return Err(format!(
                "unknown unit `{u}` in {s:?}, expected `%` or `{native}`"
            ))
        }
    };
    if n.value < 0.0 {
        return Err(format!("negative value {s:?}"));
    }
    let x = n.value * mult;
    if x >= u64::MAX as f64 {
        return Err(format!("value {s:?} is too large"));
    }
    Ok(x.round() as u64)
}

/// An access frequency: accesses per aggregation interval (an integer) or a percentage of the
/// maximum (`"50%"`), resolved against the monitoring attributes when matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Freq {
    /// Accesses per aggregation interval (the kernel's `nr_accesses`).
    Count(u32),
    /// Basis points of `damon_max_nr_accesses()`.
    MaxBp(u32),
}

impl Freq {
    /// Resolve against `max_nr_accesses` (`aggr / sample`): `MaxBp(b)` → `max × b / 10000`.
    pub fn resolve(self, max_nr_accesses: u32) -> u32 {
        match self {
            Freq::Count(n) => n,
            Freq::MaxBp(bp) => ((max_nr_accesses as u64 * bp as u64) / 10_000) as u32,
        }
    }
}

pub fn freq(q: &Quantity) -> Result<Freq, String> {
    let s = match q {
        Quantity::Str(s) => s,
        _ => {
            let v = int_value(q, "access count", u32::MAX.into())?.unwrap_or_default();
            return Ok(Freq::Count(v as u32));
        }
    };
    let n = Number::plain(s)?;
    let v = n.value;
    match n.unit {
        "%" if (0.0..=100.0).contains(&v) => Ok(Freq::MaxBp((v * 100.0).round() as u32)),
        "%" if v < 0.0 => Err(format!("negative access frequency {s:?}")),
        "%" => Err(format!("access frequency {s:?} is above 100%")),
        "" if v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(Freq::Count(v as u32)),
        "" if v >= 0.0 && v.fract() == 0.0 => Err(format!(
            "access count {s:?} is too large (the largest is {})",
            u32::MAX
        )),
        "" => Err(format!("access count {s:?} must be a whole number")),
        u => Err(format!(
            "unknown access frequency unit `{u}` in {s:?}, expected a count or `%` of the maximum"
        )),
    }
}

/// A region age: aggregation intervals (an integer) or a time, converted with the aggregation
/// interval when matching (as DAMON_RECLAIM does: `min_age / aggr_interval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Age {
    Aggregations(u32),
    TimeUs(u64),
}

impl Age {
    pub fn resolve(self, aggr_us: u64) -> u32 {
        match self {
            Age::Aggregations(n) => n,
            Age::TimeUs(t) => (t / aggr_us.max(1)).min(u32::MAX as u64) as u32,
        }
    }
}

pub fn age(q: &Quantity) -> Result<Age, String> {
    match q {
        Quantity::Str(_) => time_us(q).map(Age::TimeUs),
        _ => {
            let v = int_value(q, "age", u32::MAX.into())?.unwrap_or_default();
            Ok(Age::Aggregations(v as u32))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn s(x: &str) -> Quantity {
        Quantity::Str(x.into())
    }

    #[test]
    fn sizes() {
        assert_eq!(size(&Quantity::Int(4096)), Ok(4096));
        assert_eq!(size(&s("4 KiB")), Ok(4096));
        assert_eq!(size(&s("2MiB")), Ok(2 << 20));
        assert_eq!(size(&s("1.5 GiB")), Ok(3 << 29));
        assert_eq!(size(&s("128 M")), Ok(128 << 20));
        assert_eq!(size(&s("12")), Ok(12));
        assert!(size(&s("4 QiB"))
            .unwrap_err()
            .starts_with("unknown size unit `QiB`"));
        assert_eq!(size(&Quantity::Int(-4)), Err("negative size -4".into()));
        assert!(size(&s("-4 KiB")).unwrap_err().starts_with("negative size"));
        assert!(size(&s("KiB")).is_err());
        assert!(size(&s("1e400 B")).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(time_us(&s("200 ms")), Ok(200_000));
        assert_eq!(time_us(&s("30 s")), Ok(30_000_000));
        assert_eq!(time_us(&s("5 min")), Ok(300_000_000));
        assert_eq!(time_us(&s("1.5s")), Ok(1_500_000));
        assert!(time_us(&Quantity::Int(5))
            .unwrap_err()
            .contains("needs a unit"));
        assert!(time_us(&s("5")).unwrap_err().contains("needs a unit"));
        assert!(time_us(&s("5 fortnights"))
            .unwrap_err()
            .starts_with("unknown time unit `fortnights`"));
    }

    /// `m` meant minutes in some flags and MiB in others: refused everywhere, with a hint.
    #[test]
    fn m_is_refused_with_a_hint() {
        for d in [Dialect::Policy, Dialect::Cli] {
            let e = parse_time_us("5m", d).unwrap_err();
            assert!(e.contains("ambiguous") && e.contains("\"5min\""), "{e}");
            let e = parse_size("5 m", d).unwrap_err();
            assert!(e.contains("ambiguous") && e.contains("\"5MiB\""), "{e}");
            // The unambiguous spellings stay.
            assert_eq!(parse_time_us("5min", d), Ok(300_000_000));
            assert_eq!(parse_size("5M", d), Ok(5 << 20));
            assert_eq!(parse_size("5MiB", d), Ok(5 << 20));
        }
        assert!(time_us(&s("2 m")).unwrap_err().contains("\"2min\""));
        assert!(size(&s("2m")).unwrap_err().contains("\"2MiB\""));
        assert!(age(&s("2 m")).unwrap_err().contains("ambiguous"));
    }

    /// Huge values say "too large" with the largest accepted, or name the syntax; they do not
    /// ask for a unit or take `e30` for one.
    #[test]
    fn huge_values_are_too_large() {
        for q in [
            Quantity::Float(1e30),
            Quantity::Float(99999999999999999999999.0),
            s("1e30"),
            s("1e30 B"),
            s("99999999999999999999999"),
            s("99999999999999999999999 KiB"),
            s("1e400 B"),
        ] {
            let e = size(&q).unwrap_err();
            assert!(e.contains("too large") && e.contains("largest"), "{q}: {e}");
        }
        let e = size(&Quantity::Int(1 << 80)).unwrap_err();
        assert!(
            e.contains("too large (the largest is 18446744073709551615 bytes)"),
            "{e}"
        );
        let e = parse_size("1e30", Dialect::Cli).unwrap_err();
        assert!(e.contains("too large (the largest is 8 EiB)"), "{e}");
        let e = parse_time_us("1e30s", Dialect::Cli).unwrap_err();
        assert!(e.contains("too long (the largest is 1000000000s"), "{e}");
        let e = time_us(&s("1e30 s")).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        // A small exponent names the syntax instead.
        let e = size(&s("1e3 KiB")).unwrap_err();
        assert!(e.contains("exponents are not accepted"), "{e}");
        assert!(basis_points(&s("1e3%"))
            .unwrap_err()
            .contains("exponents are not accepted"));
        // Counts and ages too.
        assert!(freq(&Quantity::Float(1e30))
            .unwrap_err()
            .contains("too large"));
        assert!(freq(&s("99999999999")).unwrap_err().contains("too large"));
        assert!(age(&Quantity::Int(1 << 40))
            .unwrap_err()
            .contains("4294967295"));
        assert!(whole(&Quantity::Float(1e30), 5)
            .unwrap_err()
            .contains("too large"));
    }

    /// Flags take the longer and case-free spellings they always took; policies the short ones.
    #[test]
    fn dialects() {
        assert_eq!(parse_time_us("2 hours", Dialect::Cli), Ok(7_200_000_000));
        assert_eq!(parse_time_us("10sec", Dialect::Cli), Ok(10_000_000));
        assert!(parse_time_us("10sec", Dialect::Policy).is_err());
        assert_eq!(parse_size("4kb", Dialect::Cli), Ok(4096));
        assert_eq!(parse_size("1gib", Dialect::Cli), Ok(1 << 30));
        assert!(parse_size("4kb", Dialect::Policy).is_err());
        assert!(parse_size("1.5", Dialect::Cli)
            .unwrap_err()
            .contains("whole number of bytes"));
        assert!(parse_time_us("garbage", Dialect::Cli)
            .unwrap_err()
            .contains("is not a duration"));
        assert!(parse_time_us("30", Dialect::Cli)
            .unwrap_err()
            .contains("no unit"));
    }

    #[test]
    fn fractions_and_frequencies() {
        assert_eq!(basis_points(&s("40%")), Ok(4000));
        assert_eq!(basis_points(&Quantity::Int(123)), Ok(123));
        assert_eq!(permille(&s("50%")), Ok(500));
        assert_eq!(permille(&Quantity::Int(400)), Ok(400));
        assert_eq!(freq(&Quantity::Int(3)), Ok(Freq::Count(3)));
        assert_eq!(freq(&s("50%")), Ok(Freq::MaxBp(5000)));
        assert_eq!(Freq::MaxBp(5000).resolve(20), 10);
        assert_eq!(Freq::MaxBp(10_000).resolve(20), 20);
        assert!(freq(&s("150%")).is_err());
        assert_eq!(age(&Quantity::Int(7)), Ok(Age::Aggregations(7)));
        assert_eq!(age(&s("2 min")), Ok(Age::TimeUs(120_000_000)));
        assert_eq!(Age::TimeUs(120_000_000).resolve(100_000), 1200);
    }
}
