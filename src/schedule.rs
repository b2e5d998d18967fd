//! Schedule arithmetic, free of I/O and tasks: interval slots with stable
//! per-pair offsets, missed-slot skipping, and cron parsing and next-fire
//! computation in a time zone.
//!
//! Cron uses `croner` with the same options tokio-cron-scheduler uses
//! (seconds field required; a 5-field expression gets `0` seconds
//! prepended), so what `synthmon check` accepts is what the scheduler runs.
//! When croner refuses an expression its words name no field, so the
//! refusal is explained here: the field at fault (each tried alone) and
//! what is wrong with it.
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

/// Parses a cron expression: 5 fields, 6 with seconds first, or 7 with
/// seconds first and a year last. A refused expression is explained by the
/// field at fault: ``cron `0 61 * * * *`: the minute field `61` is out of
/// range 0–59``.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    cron_parser()
        .parse(&normalize_cron(expression))
        .map_err(|e| explain_cron(expression.trim(), &e))
}

/// The parser with tokio-cron-scheduler's options.
fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// One field of a cron expression, for explaining a refused one.
struct CronField {
    /// As the field is named in a message: "the minute field".
    name: &'static str,
    /// One value of the field with its article, as in "`x` is not a
    /// minute (0–59)".
    unit: &'static str,
    min: u16,
    max: u16,
    /// The names croner reads in this field, for their numbers (the
    /// position in the list plus `min`).
    aliases: &'static [&'static str],
    /// The numbers may be written as names, said in the hint.
    alias_hint: &'static str,
    /// The special forms croner reads in this field (`L`, `W`, `#`), which
    /// are left to its own words.
    specials: &'static [char],
}

/// Every field in the 7-field order croner parses (seconds first, year
/// last); a 5-field expression is the middle five.
const CRON_FIELDS: [CronField; 7] = [
    CronField {
        name: "second",
        unit: "a second",
        min: 0,
        max: 59,
        aliases: &[],
        alias_hint: "",
        specials: &[],
    },
    CronField {
        name: "minute",
        unit: "a minute",
        min: 0,
        max: 59,
        aliases: &[],
        alias_hint: "",
        specials: &[],
    },
    CronField {
        name: "hour",
        unit: "an hour",
        min: 0,
        max: 23,
        aliases: &[],
        alias_hint: "",
        specials: &[],
    },
    CronField {
        name: "day-of-month",
        unit: "a day of the month",
        min: 1,
        max: 31,
        aliases: &[],
        alias_hint: "",
        specials: &['L', 'W', '?'],
    },
    CronField {
        name: "month",
        unit: "a month",
        min: 1,
        max: 12,
        aliases: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        alias_hint: " or JAN–DEC",
        specials: &[],
    },
    CronField {
        name: "day-of-week",
        unit: "a day of the week",
        min: 0,
        max: 7,
        aliases: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        alias_hint: " or SUN–SAT",
        specials: &['L', '#', '?', '+'],
    },
    CronField {
        name: "year",
        unit: "a year",
        // croner's bounds (`YEAR_LOWER_LIMIT`, `YEAR_UPPER_LIMIT`).
        min: 1,
        max: 5000,
        aliases: &[],
        alias_hint: "",
        specials: &[],
    },
];

/// Why croner refused `expression`: the field count, or the first field
/// that croner refuses on its own (every other field `*`) and what is
/// wrong with it. croner's own words only say what kind of fault it was
/// ("Number out of bounds."), never where.
fn explain_cron(expression: &str, error: &croner::errors::CronError) -> String {
    let parts: Vec<&str> = expression.split_whitespace().collect();
    let first = match parts.len() {
        5 => 1,
        6 | 7 => 0,
        n => {
            return format!(
                "cron `{expression}` has {n} field{}, expected 5 (minute hour day-of-month month day-of-week), \
                 6 with seconds first, or 7 with seconds first and a year last",
                if n == 1 { "" } else { "s" }
            );
        }
    };
    for (i, text) in parts.iter().enumerate() {
        let index = first + i;
        let mut alone = ["*"; 7];
        alone[index] = text;
        if let Err(e) = cron_parser().parse(&alone.join(" ")) {
            let field = &CRON_FIELDS[index];
            let why = field_fault(field, text)
                .unwrap_or_else(|| format!("`{text}`: {}", croner_words(&e)));
            return format!("cron `{expression}`: the {} field {why}", field.name);
        }
    }
    format!("cron `{expression}`: {}", croner_words(error))
}

/// croner's message as a clause: "number out of bounds".
fn croner_words(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let text = match error {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}

/// What is wrong with one field croner refused, when it is a fault this
/// can name (a value out of range or not a value at all, a step of zero, a
/// range that runs backwards); `None` leaves it to croner's words. The
/// text follows "the minute field ".
fn field_fault(field: &CronField, text: &str) -> Option<String> {
    let fault = FieldFault { field, text };
    text.split(',')
        .filter(|item| !item.is_empty())
        .find_map(|item| fault.item(item).err())
}

/// One field's text, for [`field_fault`].
struct FieldFault<'a> {
    field: &'a CronField,
    text: &'a str,
}

impl FieldFault<'_> {
    /// "`61` is out of range 0–59", or "`1,99`: `99` is out of range 1–31"
    /// when the part at fault is not the whole field.
    fn at(&self, part: &str, fault: &str) -> String {
        if part == self.text {
            format!("`{part}` {fault}")
        } else {
            format!("`{}`: `{part}` {fault}", self.text)
        }
    }

    /// One item of a list: `*`, a value or a range, with a step or not.
    fn item(&self, item: &str) -> Result<(), String> {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        match step.map(str::parse::<u32>) {
            Some(Ok(0)) => return Err(self.at(item, "has a step of 0; a step is at least 1")),
            Some(Err(_)) => {
                return Err(self.at(item, "has a step that is not a number"));
            }
            Some(Ok(_)) | None => {}
        }
        if base == "*" || base == "?" {
            return Ok(());
        }
        let Some((low, high)) = base.split_once('-') else {
            return self.value(base, false).map(drop);
        };
        if low.is_empty() || high.is_empty() {
            return Err(self.at(base, "is not a range like `1-5`"));
        }
        if let (Some(l), Some(h)) = (self.value(low, false)?, self.value(high, true)?) {
            if l > h {
                let f = self.field;
                return Err(self.at(
                    base,
                    &format!(
                        "runs backwards; a range does not wrap around (write `{l}-{},{}-{h}`)",
                        f.max, f.min
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One value: its number, `None` for a special form croner reads
    /// (`L`, `15W`), or the fault at it. `range_end`: `SUN` ends a range
    /// as 7 (croner reads `-SUN` so).
    fn value(&self, part: &str, range_end: bool) -> Result<Option<u16>, String> {
        let f = self.field;
        let range = format!("{}–{}", f.min, f.max);
        let upper = part.to_ascii_uppercase();
        if let Some(i) = f.aliases.iter().position(|a| *a == upper) {
            let n = u16::try_from(i).unwrap_or(u16::MAX);
            return Ok(Some(if range_end && f.max == 7 && n == 0 {
                7
            } else {
                f.min.saturating_add(n)
            }));
        }
        if let Some((day, nth)) = part.split_once('#')
            && f.specials.contains(&'#')
        {
            if !matches!(nth.parse::<u8>(), Ok(1..=5)) {
                return Err(self.at(
                    part,
                    &format!(
                        "asks for occurrence `#{nth}` of the weekday in the month, which is 1 to 5"
                    ),
                ));
            }
            return self.value(day, false);
        }
        if upper.contains(f.specials) {
            return Ok(None);
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.at(
                part,
                &format!("is not {} ({range}{})", f.unit, f.alias_hint),
            ));
        }
        match part.parse::<u16>() {
            Ok(n) if (f.min..=f.max).contains(&n) => Ok(Some(n)),
            _ => Err(self.at(part, &format!("is out of range {range}"))),
        }
    }
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
    fn cron_accepts_five_six_and_seven_fields() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("*/10 * * * * *").is_ok());
        assert!(parse_cron("0 0 3 * * * 2030").is_ok());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every 5m").is_err());
        assert_eq!(normalize_cron(" 0 3 * * * "), "0 0 3 * * *");
    }

    #[test]
    fn a_refused_cron_names_the_field_at_fault_and_why() {
        let why = |expression: &str| parse_cron(expression).unwrap_err();
        for (expression, message) in [
            (
                "0 61 * * * *",
                "cron `0 61 * * * *`: the minute field `61` is out of range 0–59",
            ),
            (
                "61 * * * *",
                "cron `61 * * * *`: the minute field `61` is out of range 0–59",
            ),
            (
                "60 * * * * *",
                "cron `60 * * * * *`: the second field `60` is out of range 0–59",
            ),
            (
                " 0 0 32 * * ",
                "cron `0 0 32 * *`: the day-of-month field `32` is out of range 1–31",
            ),
            (
                "0 0 1-40/5 * *",
                "cron `0 0 1-40/5 * *`: the day-of-month field `1-40/5`: `40` is out of range 1–31",
            ),
            (
                "0 0 * 13 *",
                "cron `0 0 * 13 *`: the month field `13` is out of range 1–12",
            ),
            (
                "0 0 * JAN-FOO *",
                "cron `0 0 * JAN-FOO *`: the month field `JAN-FOO`: `FOO` is not a month (1–12 or JAN–DEC)",
            ),
            (
                "0 0 * * 8",
                "cron `0 0 * * 8`: the day-of-week field `8` is out of range 0–7",
            ),
            (
                "0 0 * * SAT-MON",
                "cron `0 0 * * SAT-MON`: the day-of-week field `SAT-MON` runs backwards; a range does not wrap around (write `6-7,0-1`)",
            ),
            (
                "0 0 * * 0#0",
                "cron `0 0 * * 0#0`: the day-of-week field `0#0` asks for occurrence `#0` of the weekday in the month, which is 1 to 5",
            ),
            (
                "0 0 * * 9#2",
                "cron `0 0 * * 9#2`: the day-of-week field `9#2`: `9` is out of range 0–7",
            ),
            (
                "0 a * * *",
                "cron `0 a * * *`: the hour field `a` is not an hour (0–23)",
            ),
            (
                "0 -5 * * *",
                "cron `0 -5 * * *`: the hour field `-5` is not a range like `1-5`",
            ),
            (
                "*/x * * * *",
                "cron `*/x * * * *`: the minute field `*/x` has a step that is not a number",
            ),
            (
                "0 0 1L * *",
                "cron `0 0 1L * *`: the day-of-month field `1L`: nth specifier # not allowed in the current field",
            ),
            (
                "0 0 0 * * * 5001",
                "cron `0 0 0 * * * 5001`: the year field `5001` is out of range 1–5000",
            ),
            (
                "every 5m",
                "cron `every 5m` has 2 fields, expected 5 (minute hour day-of-month month day-of-week), \
                 6 with seconds first, or 7 with seconds first and a year last",
            ),
        ] {
            assert_eq!(why(expression), message, "{expression}");
        }
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
