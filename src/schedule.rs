//! Schedule arithmetic, free of I/O and tasks: interval slots with stable
//! per-pair offsets, missed-slot skipping, and cron parsing and next-fire
//! computation in a time zone.
//!
//! Cron uses `croner` with the same options tokio-cron-scheduler uses
//! (seconds field required; a 5-field expression gets `0` seconds
//! prepended), so what `synthmon check` accepts is what the scheduler runs.
//!
//! Daylight-saving rule (croner's, which follows the Open Cron Pattern
//! Specification), pinned by the tests below in `America/New_York`:
//! - spring forward (a local hour does not exist): a job whose local time
//!   falls into the gap runs once, at the first valid instant after it
//!   (02:30 on a day when 02:00 jumps to 03:00 runs at 03:00 EDT);
//! - fall back (a local hour happens twice): every local time fires once,
//!   in its first pass; the repeated hour is not run again. A cron of
//!   `*/30 * * * *` therefore has one 90-minute gap that night.
//!
//! Frequent checks should use `every 30s`-style intervals, which run on the
//! monotonic clock and ignore time zones entirely; cron is for wall-clock
//! tasks ("03:00 every night").

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use std::time::Duration;
use tokio::time::Instant;

/// How far ahead "never" is: 30 years, as tokio's own timers take it. A
/// deadline or a slot later than this is treated as this.
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `at + d`, or at most [`FAR_FUTURE`] later, so it cannot panic on
/// overflow whatever `d` is (`Instant + Duration` does when the sum does
/// not fit; load-time bounds keep user durations far from that, and this
/// keeps the arithmetic safe for any value that skips them).
pub fn saturating_add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FAR_FUTURE))
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// A number of nanoseconds as a duration, saturating at [`Duration::MAX`].
fn nanos(n: u128) -> Duration {
    const PER_SECOND: u128 = 1_000_000_000;
    match u64::try_from(n / PER_SECOND) {
        // The remainder is below 10⁹ and fits.
        Ok(secs) => Duration::new(secs, (n % PER_SECOND) as u32),
        Err(_) => Duration::MAX,
    }
}

/// FNV-1a, 64 bit: a hash that is stable across builds and platforms (std's
/// `DefaultHasher` promises neither), for schedule offsets and sharding.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where in its interval a pair fires: stable per key, spread uniformly, so
/// a thousand probes with the same interval do not fire in the same
/// millisecond.
pub fn spread_offset(key: &str, interval: Duration) -> Duration {
    let ms = u64::try_from(interval.as_millis().max(1)).unwrap_or(u64::MAX);
    Duration::from_millis(stable_hash(key.as_bytes()) % ms)
}

/// The slots of an interval schedule: `anchor + offset + k × interval`.
///
/// The arithmetic saturates at [`FAR_FUTURE`]: an interval too long for
/// the clock (which `check` refuses, see `config::check::MAX_INTERVAL`)
/// puts its slots in the far future instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalClock {
    pub anchor: Instant,
    pub offset: Duration,
    pub interval: Duration,
}

impl IntervalClock {
    /// The first slot at or after `now`.
    pub fn first_at_or_after(&self, now: Instant) -> Instant {
        let base = saturating_add(self.anchor, self.offset);
        if now <= base {
            return base;
        }
        let since = now - base;
        let period = self.interval.as_nanos().max(1);
        // `since` is below 2⁶⁴ s and `period` below 2⁹⁴ ns, so neither the
        // quotient nor `k × period` (at most `since + period`) overflows.
        let k = since.as_nanos().div_ceil(period);
        saturating_add(base, nanos(k.saturating_mul(period)))
    }

    /// Given the slot that was due and the instant the scheduler got to it,
    /// returns the next slot to wait for and how many slots were missed in
    /// between. After a stall, a sleep or a clock jump the missed slots are
    /// skipped, never fired in a burst.
    pub fn after_fire(&self, due: Instant, now: Instant) -> (Instant, u64) {
        let next = self.first_at_or_after(saturating_add(now.max(due), Duration::from_nanos(1)));
        let late = now.saturating_duration_since(due);
        let missed = late.as_nanos() / self.interval.as_nanos().max(1);
        (next, u64::try_from(missed).unwrap_or(u64::MAX))
    }
}

/// Parses a cron expression (5 fields, or 6 with seconds first).
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let normalized = normalize_cron(expression);
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&normalized)
        .map_err(|e| format!("invalid cron expression `{expression}`: {e}"))
}

/// The 6-field form tokio-cron-scheduler expects.
pub fn normalize_cron(expression: &str) -> String {
    let trimmed = expression.trim();
    if trimmed.split_whitespace().count() == 5 {
        format!("0 {trimmed}")
    } else {
        trimmed.to_owned()
    }
}

/// Parses an IANA time zone name like `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("unknown time zone `{name}` (expected an IANA name like `Europe/Berlin` or `UTC`)")
    })
}

/// The next fire strictly after `after`, in UTC.
pub fn cron_next<Z: TimeZone>(cron: &Cron, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after.with_timezone(tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The shortest gap between consecutive fires among the next few, to check
/// a probe's timeout against.
pub fn cron_min_gap<Z: TimeZone>(cron: &Cron, tz: &Z, from: DateTime<Utc>) -> Option<Duration> {
    let mut prev = cron_next(cron, tz, from)?;
    let mut min: Option<Duration> = None;
    for _ in 0..16 {
        let next = cron_next(cron, tz, prev)?;
        let gap = (next - prev).to_std().ok()?;
        min = Some(min.map_or(gap, |m| m.min(gap)));
        prev = next;
    }
    min
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn offsets_are_stable_and_spread() {
        let i = Duration::from_secs(30);
        assert_eq!(spread_offset("a@prod", i), spread_offset("a@prod", i));
        // 1,000 keys over 30 buckets of 1 s: every bucket used, none crowded.
        let mut buckets = [0u32; 30];
        for n in 0..1000 {
            let o = spread_offset(&format!("probe-{n}@prod"), i);
            assert!(o < i);
            buckets[o.as_secs() as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (10..=60).contains(b)), "{buckets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn slots_and_missed_runs() {
        let anchor = Instant::now();
        let c = IntervalClock {
            anchor,
            offset: Duration::from_secs(7),
            interval: Duration::from_secs(30),
        };
        assert_eq!(c.first_at_or_after(anchor), anchor + Duration::from_secs(7));
        assert_eq!(
            c.first_at_or_after(anchor + Duration::from_secs(8)),
            anchor + Duration::from_secs(37)
        );
        // On time: next slot, nothing missed.
        let due = anchor + Duration::from_secs(37);
        assert_eq!(c.after_fire(due, due), (due + Duration::from_secs(30), 0));
        // Ten minutes late: the twenty slots in between are skipped, and the
        // next one is in the future, not a burst of catch-up runs.
        let now = due + Duration::from_secs(600);
        let (next, missed) = c.after_fire(due, now);
        assert_eq!(missed, 20);
        assert!(next > now && next <= now + Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_of_an_interval_too_long_for_the_clock_saturate_instead_of_panicking() {
        let anchor = Instant::now();
        assert_eq!(saturating_add(anchor, Duration::MAX), anchor + FAR_FUTURE);
        assert_eq!(
            saturating_add(anchor, Duration::from_secs(5)),
            anchor + Duration::from_secs(5)
        );
        let huge = IntervalClock {
            anchor,
            offset: spread_offset("p@e", Duration::MAX),
            interval: Duration::MAX,
        };
        let first = huge.first_at_or_after(anchor);
        assert!(first > anchor && first <= anchor + FAR_FUTURE);
        // Past the (saturated) first slot: the next is no earlier.
        let late = anchor + FAR_FUTURE + Duration::from_secs(1);
        assert!(huge.first_at_or_after(late) >= late);
        let (next, missed) = huge.after_fire(first, first + Duration::from_secs(3600));
        assert!(next > first);
        assert_eq!(missed, 0);
        // Just past 2⁶⁴ ms: the old arithmetic truncated offset and period
        // to 5 s, so a pair meant to run never ran every 5 s.
        let wraps = IntervalClock {
            anchor,
            offset: spread_offset("p@e", Duration::new(18_446_744_073_709_556, 616_000_000)),
            interval: Duration::new(18_446_744_073_709_556, 616_000_000),
        };
        let first = wraps.first_at_or_after(anchor);
        assert!(
            first >= anchor + Duration::from_secs(3600),
            "{:?}",
            first - anchor
        );
        let (next, _) = wraps.after_fire(first, first);
        assert_eq!(next, first + FAR_FUTURE);
        // An offset past the far future is taken as the far future.
        let far = IntervalClock {
            anchor,
            offset: Duration::MAX,
            interval: Duration::from_secs(30),
        };
        assert_eq!(far.first_at_or_after(anchor), anchor + FAR_FUTURE);
    }

    #[test]
    fn cron_accepts_five_and_six_fields() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/10 * * * * *").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every 5m").is_err());
        assert_eq!(normalize_cron(" 0 3 * * * "), "0 0 3 * * *");
    }

    #[test]
    fn time_zones() {
        assert!(parse_timezone("America/New_York").is_ok());
        assert!(parse_timezone("UTC").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn dst_spring_forward_gap_runs_once_after_the_gap() {
        // 2025-03-09: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
        let cron = parse_cron("0 30 2 * * *").unwrap();
        let before = utc("2025-03-09T06:00:00Z"); // 01:00 EST
        let fire = cron_next(&cron, &New_York, before).unwrap();
        assert_eq!(
            fire,
            utc("2025-03-09T07:00:00Z"),
            "03:00 EDT, right after the gap"
        );
        // And the day after, back to 02:30 local.
        let next = cron_next(&cron, &New_York, fire).unwrap();
        assert_eq!(next, utc("2025-03-10T06:30:00Z"));
    }

    #[test]
    fn dst_fall_back_overlap_runs_once() {
        // 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let cron = parse_cron("0 30 1 * * *").unwrap();
        let before = utc("2025-11-02T04:00:00Z"); // 00:00 EDT
        let fire = cron_next(&cron, &New_York, before).unwrap();
        assert_eq!(
            fire,
            utc("2025-11-02T05:30:00Z"),
            "01:30 EDT, the first pass"
        );
        let next = cron_next(&cron, &New_York, fire).unwrap();
        assert_eq!(next, utc("2025-11-03T06:30:00Z"), "not again at 01:30 EST");
    }

    #[test]
    fn dst_fall_back_wildcards_fire_each_local_time_once() {
        // Every 30 minutes across the fall-back night: 01:00 and 01:30 EST
        // (the second pass) are not fired again, so one gap is 90 minutes.
        let cron = parse_cron("0 */30 * * * *").unwrap();
        let mut t = utc("2025-11-02T04:45:00Z"); // 00:45 EDT
        let mut fires = Vec::new();
        for _ in 0..5 {
            t = cron_next(&cron, &New_York, t).unwrap();
            fires.push(t.to_rfc3339());
        }
        assert_eq!(
            fires,
            [
                "2025-11-02T05:00:00+00:00", // 01:00 EDT
                "2025-11-02T05:30:00+00:00", // 01:30 EDT
                "2025-11-02T07:00:00+00:00", // 02:00 EST
                "2025-11-02T07:30:00+00:00",
                "2025-11-02T08:00:00+00:00",
            ]
        );
    }

    #[test]
    fn dst_spring_forward_wildcards_skip_the_missing_hour() {
        let cron = parse_cron("0 */30 * * * *").unwrap();
        let t = utc("2025-03-09T06:45:00Z"); // 01:45 EST
        let a = cron_next(&cron, &New_York, t).unwrap();
        assert_eq!(
            a,
            utc("2025-03-09T07:00:00Z"),
            "03:00 EDT follows 01:30 EST"
        );
    }

    #[test]
    fn min_gap() {
        let cron = parse_cron("0 */5 * * * *").unwrap();
        let gap = cron_min_gap(&cron, &Utc, utc("2025-01-01T00:00:00Z")).unwrap();
        assert_eq!(gap, Duration::from_secs(300));
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
