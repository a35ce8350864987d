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

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
];

const TIME_UNITS_US: &[(&str, u64)] = &[
    ("us", 1),
    ("µs", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("min", 60_000_000),
    ("h", 3_600_000_000),
];

/// Split `"1.5 GiB"` into (1.5, "GiB"); the unit may follow the number without a space.
fn split_number(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == '-' || *c == '+' || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num = num.replace('_', "");
    if num.is_empty() {
        return Err(format!("expected a number before the unit in {s:?}"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad number {num:?} in {s:?}"))?;
    if !v.is_finite() {
        return Err(format!("bad number {num:?} in {s:?}"));
    }
    Ok((v, unit.trim()))
}

fn scaled(v: f64, mult: u64, what: &str, orig: &str) -> Result<u64, String> {
    if v < 0.0 {
        return Err(format!("negative {what} {orig}"));
    }
    let x = v * mult as f64;
    if x >= u64::MAX as f64 {
        return Err(format!("{what} {orig} is too large"));
    }
    Ok(x.round() as u64)
}

fn unit_list(units: &[(&str, u64)]) -> String {
    units.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ")
}

fn int_value(q: &Quantity, what: &str) -> Result<Option<u64>, String> {
    match q {
        Quantity::Int(v) if *v < 0 => Err(format!("negative {what} {v}")),
        Quantity::Int(v) => u64::try_from(*v)
            .map(Some)
            .map_err(|_| format!("{what} {v} is too large")),
        Quantity::Float(v) if *v < 0.0 => Err(format!("negative {what} {v}")),
        Quantity::Float(v) => Err(format!("{what} {v} needs a unit or must be a whole number")),
        Quantity::Str(_) => Ok(None),
    }
}

/// A size in bytes: an integer (bytes) or `"<n> <unit>"` with B, KiB, MiB, GiB, TiB (K, M, G,
/// T are the same binary units).
pub fn size(q: &Quantity) -> Result<u64, String> {
    if let Some(v) = int_value(q, "size")? {
        return Ok(v);
    }
    let Quantity::Str(s) = q else { unreachable!() };
    let (v, unit) = split_number(s)?;
    if unit.is_empty() {
        return scaled(v, 1, "size", s).and_then(|b| {
            if v.fract() != 0.0 {
                Err(format!("size {s:?} is not a whole number of bytes"))
            } else {
                Ok(b)
            }
        });
    }
    let mult = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            format!(
                "unknown size unit `{unit}` in {s:?}, expected one of {}",
                unit_list(SIZE_UNITS)
            )
        })?;
    scaled(v, mult, "size", &format!("{s:?}"))
}

/// A time in µs: `"<n> <unit>"` with us, ms, s, min, h. A bare number is refused: its unit
/// would be a guess.
pub fn time_us(q: &Quantity) -> Result<u64, String> {
    let s = match q {
        Quantity::Str(s) => s,
        Quantity::Int(v) if *v < 0 => return Err(format!("negative time {v}")),
        Quantity::Float(v) if *v < 0.0 => return Err(format!("negative time {v}")),
        other => {
            return Err(format!(
                "time {other} needs a unit, like \"{other} ms\" ({})",
                unit_list(TIME_UNITS_US)
            ))
        }
    };
    let (v, unit) = split_number(s)?;
    let mult = TIME_UNITS_US
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            if unit.is_empty() {
                format!("time {s:?} needs a unit ({})", unit_list(TIME_UNITS_US))
            } else {
                format!(
                    "unknown time unit `{unit}` in {s:?}, expected one of {}",
                    unit_list(TIME_UNITS_US)
                )
            }
        })?;
    scaled(v, mult, "time", &format!("{s:?}"))
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
    if let Some(v) = int_value(q, "value")? {
        return Ok(v);
    }
    let Quantity::Str(s) = q else { unreachable!() };
    let (v, unit) = split_number(s)?;
    let mult = match unit {
        "%" => scale as f64 / 100.0,
        u if u == native || (native == "‰" && u == "permille") => 1.0,
        "" => 1.0,
        u => {
            return Err(format!(
                "unknown unit `{u}` in {s:?}, expected `%` or `{native}`"
            ))
        }
    };
    if v < 0.0 {
        return Err(format!("negative value {s:?}"));
    }
    Ok((v * mult).round() as u64)
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
    if let Some(v) = int_value(q, "access count")? {
        return u32::try_from(v)
            .map(Freq::Count)
            .map_err(|_| format!("access count {v} is too large"));
    }
    let Quantity::Str(s) = q else { unreachable!() };
    let (v, unit) = split_number(s)?;
    match unit {
        "%" if (0.0..=100.0).contains(&v) => Ok(Freq::MaxBp((v * 100.0).round() as u32)),
        "%" if v < 0.0 => Err(format!("negative access frequency {s:?}")),
        "%" => Err(format!("access frequency {s:?} is above 100%")),
        "" if v >= 0.0 && v.fract() == 0.0 => Ok(Freq::Count(v as u32)),
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
    if let Some(v) = int_value(q, "age")? {
        return u32::try_from(v)
            .map(Age::Aggregations)
            .map_err(|_| format!("age {v} is too large"));
    }
    time_us(q).map(Age::TimeUs)
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
