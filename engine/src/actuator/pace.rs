//! Page-out pacing: a token bucket that spreads a second's page-out over the second.
//!
//! The quota of a kernel-style scheme (e.g. 10 ms and 128 MiB per 1 s) is charged at the
//! first apply of each window, so without a pace the whole second's page-out goes in one
//! batch: one burst of reclaim and zram compression next to the workload (issue 14 measured
//! ~40% of the workload's throughput lost in the first seconds). With
//! [`ApplyOpts::pace_bytes_per_s`](super::ApplyOpts::pace_bytes_per_s) (the schemes give it:
//! `Schemes::pace_bytes_per_s`, their effective quotas per reset interval, so it follows the
//! time quota's throughput estimate) the actuator issues at most `rate × PACE_SLICE` bytes
//! at once and `rate` per second on average, waiting within the round (up to
//! [`PACE_ROUND_NS`], in steps of at most [`PACE_STEP_NS`]) for the bucket to refill; what
//! still does not fit is reported
//! [`ApplyErrorKind::Paced`](crate::report::ApplyErrorKind::Paced), refunded to the quota and
//! planned again at the scheme's next apply. Only page-out is paced.
//!
//! The rule: over any interval of length `d`, the bytes let through are at most
//! `burst + rate × d` with `burst = max(rate × PACE_SLICE, one page)`.
//!
//! **Time pace.** A byte rate alone cannot keep the calls' *time* within the time quota:
//! the first window's size quota comes from the kernel's initial throughput guess (4 MiB per
//! ms, `damos_set_effective_quota()`, mm/damon/core.c 6.12), 400 MiB for a 100 ms quota,
//! which at a measured 0.4 MiB/ms took 0.8 s of calls in one second next to the workload
//! (issue 14's worst second). With
//! [`ApplyOpts::pace_time_ns_per_s`](super::ApplyOpts::pace_time_ns_per_s) (the schemes give
//! their time quotas per second: `Schemes::pace_time_ns_per_s`) the first page-out call is a
//! probe of [`PACE_PROBE_BYTES`]; from then on the rate is the lower of the byte pace and the
//! time pace turned into bytes by the measured cost ([`CallCost`]), so the calls take about
//! the time the quotas allow in every second, from the first one on.

/// The slice the pace spreads over: at most a tenth of a second's page-out goes at once.
pub const PACE_SLICE_NS: u64 = 100_000_000;

/// A round waits for the pace for at most this long (one second: the reset interval of the
/// kernel-style quotas); what the pace still holds back then is reported `Paced`.
pub const PACE_ROUND_NS: u64 = 1_000_000_000;

/// The longest single wait for the bucket to refill (the cancel flag is checked between).
pub const PACE_STEP_NS: u64 = 50_000_000;

const NS_PER_S: u128 = 1_000_000_000;

/// With a time pace and no cost measured yet, the first page-out call asks for at most
/// this much: a probe of the call's cost, not a guess of it.
pub const PACE_PROBE_BYTES: u64 = 1 << 20;

/// Each call's weight in [`CallCost`] decays by this factor per later call.
const COST_DECAY: f64 = 0.8;

/// The measured cost of page-out calls: CPU ns per byte (`ActuatorSys::cpu_ns`), a bytes-weighted average whose
/// calls' weights decay by [`COST_DECAY`] each (the last ~5 calls count). Page-out costs
/// what reclaim and compression cost beside the target's own work (0.2–0.8 MiB/ms on the
/// 2-vCPU development host, 2026-12: docs/performance.md "Reclaim on static workloads"), so
/// it is measured, never assumed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallCost {
    bytes: f64,
    ns: f64,
}

impl CallCost {
    /// A page-out call of `bytes` took `ns`.
    pub fn note(&mut self, bytes: u64, ns: u64) {
        if bytes == 0 {
            return;
        }
        self.bytes = self.bytes * COST_DECAY + bytes as f64;
        self.ns = self.ns * COST_DECAY + ns as f64;
    }

    /// True once a call has been measured.
    pub fn measured(&self) -> bool {
        self.bytes > 0.0
    }

    /// Bytes per second of calls that a time pace of `time_ns_per_s` allows (at least one
    /// byte), or `None` before the first call.
    pub fn rate(&self, time_ns_per_s: u64) -> Option<u64> {
        if !self.measured() {
            return None;
        }
        // A call measured at 0 ns (a coarse clock) counts as 1 ns: a finite rate.
        let per_ns = self.bytes / self.ns.max(1.0);
        Some((per_ns * time_ns_per_s as f64).clamp(1.0, u64::MAX as f64 / 2.0) as u64)
    }
}

/// The token bucket (see the module doc). Tokens are kept in byte·ns (bytes × 10⁹), so
/// short waits refill without rounding loss.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pacer {
    scaled: u128,
    last_ns: Option<u64>,
}

impl Pacer {
    /// The bucket's size at `rate` bytes/s: `rate × PACE_SLICE`, at least `page`.
    pub fn burst(rate: u64, page: u64) -> u64 {
        (((rate as u128) * PACE_SLICE_NS as u128 / NS_PER_S).min(u64::MAX as u128) as u64).max(page)
    }

    /// Bytes that may go now, at `rate` bytes/s, on a monotonic clock `now_ns`. A new rate
    /// keeps the tokens (capped at its burst); the first call starts full.
    pub fn available(&mut self, rate: u64, page: u64, now_ns: u64) -> u64 {
        let cap = Self::burst(rate, page) as u128 * NS_PER_S;
        match self.last_ns {
            None => self.scaled = cap,
            Some(last) => {
                let dt = now_ns.saturating_sub(last) as u128;
                self.scaled = self.scaled.saturating_add(rate as u128 * dt).min(cap);
            }
        }
        // A clock that went back does not refill twice.
        self.last_ns = Some(self.last_ns.map_or(now_ns, |l| l.max(now_ns)));
        (self.scaled / NS_PER_S) as u64
    }

    /// Nanoseconds until `bytes` are available at `rate` (0 if they are).
    pub fn wait_ns(&self, rate: u64, bytes: u64) -> u64 {
        let need = (bytes as u128 * NS_PER_S).saturating_sub(self.scaled);
        need.div_ceil(rate.max(1) as u128).min(u64::MAX as u128) as u64
    }

    /// `bytes` went out.
    pub fn take(&mut self, bytes: u64) {
        self.scaled = self.scaled.saturating_sub(bytes as u128 * NS_PER_S);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = 4096;

    #[test]
    fn a_seconds_page_out_is_spread_over_ten_slices() {
        let mut p = Pacer::default();
        let rate = 100 << 20;
        // Full at the start: a tenth of the rate.
        assert_eq!(p.available(rate, P, 0), 10 << 20);
        p.take(10 << 20);
        assert_eq!(p.available(rate, P, 0), 0);
        // 50 ms later: half a slice.
        assert_eq!(p.available(rate, P, 50_000_000), 5 << 20);
        // Never more than one slice, however long the gap.
        assert_eq!(p.available(rate, P, 60_000_000_000), 10 << 20);
        // Many short waits refill as one long one.
        let mut p = Pacer::default();
        p.available(rate, P, 0);
        p.take(10 << 20);
        let mut t = 0;
        for _ in 0..1000 {
            t += 1000;
            p.available(rate, P, t);
        }
        assert_eq!(
            p.available(rate, P, t),
            (rate as u128 * 1_000_000 / NS_PER_S) as u64
        );
        assert_eq!(p.wait_ns(rate, 1 << 20), 10_000_000 - 1_000_000);
        // A tiny rate still lets a page through.
        let mut p = Pacer::default();
        assert_eq!(p.available(1, P, 0), P);
    }

    #[test]
    fn call_cost_follows_the_last_calls() {
        let mut c = CallCost::default();
        assert_eq!(c.rate(100_000_000), None);
        // 1 MiB in 2.5 ms: 0.4 MiB/ms, so 100 ms/s of calls is 40 MiB/s.
        c.note(1 << 20, 2_500_000);
        assert_eq!(c.rate(100_000_000), Some(40 << 20));
        // The cost doubles: after a few calls the rate is near half.
        for _ in 0..12 {
            c.note(1 << 20, 5_000_000);
        }
        let r = c.rate(100_000_000).unwrap();
        assert!(r > 20 << 20 && r < 21 << 20, "{r}");
        // Empty calls teach nothing; a 0-ns call gives a finite rate.
        let before = c;
        c.note(0, 1_000_000);
        assert_eq!(c, before);
        let mut z = CallCost::default();
        z.note(4096, 0);
        assert!(z.rate(1).unwrap() >= 4096);
    }

    proptest! {
        /// Over any window the pacer lets through at most `burst + rate × window`, whatever
        /// the caller asks for and whenever it asks.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 1u64..(1 << 32),
            steps in proptest::collection::vec((0u64..300_000_000, 0u64..(1 << 30)), 1..60),
        ) {
            let mut p = Pacer::default();
            let mut now = 0u64;
            let mut log: Vec<(u64, u64)> = Vec::new();
            for (dt, want) in steps {
                now += dt;
                let avail = p.available(rate, P, now);
                let got = want.min(avail);
                p.take(got);
                log.push((now, got));
            }
            let burst = Pacer::burst(rate, P) as u128;
            for i in 0..log.len() {
                let mut sum = 0u128;
                for j in i..log.len() {
                    sum += log[j].1 as u128;
                    let window = (log[j].0 - log[i].0) as u128;
                    prop_assert!(sum <= burst + rate as u128 * window / NS_PER_S + 1,
                        "{} bytes in {} ns at {} B/s", sum, window, rate);
                }
            }
        }
    }
}
