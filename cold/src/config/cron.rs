//! `alpha.reweight_cron`: a five-field cron schedule (minute hour day-of-month month
//! day-of-week), always evaluated in UTC.
//!
//! Only numeric fields are accepted: `*`, `n`, `a-b`, `*/n`, `a-b/n`, `a/n` and comma lists of
//! those. Day-of-week is 0-7 with both 0 and 7 meaning Sunday. As in Vixie cron, when both day
//! fields are restricted a day matches if *either* does; otherwise both must match.
//! A schedule that can never fire (`0 0 30 2 *`) is refused, because a governor that never
//! reweights is a configuration mistake, not a choice.

use core::fmt;
use core::str::FromStr;

/// A validated cron schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Both day fields are restricted: a day matches when either matches.
    day_or: bool,
}

/// Seconds in a day.
const DAY: u64 = 86_400;
/// Days in a Gregorian 400-year cycle: after this many days every calendar pattern has recurred.
const CYCLE_DAYS: u64 = 146_097;

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
    },
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
    },
];

impl Cron {
    /// Parses and validates a schedule; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "must have 5 fields (minute hour day-of-month month day-of-week), got {}",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        let mut errors = Vec::new();
        for ((part, spec), set) in parts.iter().zip(&FIELDS).zip(&mut sets) {
            match parse_field(part, spec) {
                Ok(bits) => *set = bits,
                Err(e) => errors.push(format!("{} field {part:?}: {e}", spec.name)),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        // Day-of-week 7 is Sunday, like 0.
        let mut dow = sets[4];
        if dow & (1 << 7) != 0 {
            dow = (dow & !(1 << 7)) | 1;
        }
        let cron = Cron {
            source: parts.join(" "),
            minutes: sets[0],
            hours: sets[1],
            days_of_month: sets[2],
            months: sets[3],
            days_of_week: dow,
            day_or: !parts[2].starts_with('*') && !parts[4].starts_with('*'),
        };
        if cron.next_after(0).is_none() {
            return Err("never fires (no such day in any year)".to_owned());
        }
        Ok(cron)
    }

    /// The schedule as written (fields separated by single spaces).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// `true` if the schedule fires in the UTC minute containing `unix_secs`.
    pub fn matches(&self, unix_secs: u64) -> bool {
        let days = unix_secs / DAY;
        let minute_of_day = unix_secs % DAY / 60;
        self.day_matches(days) && bit(self.hours, minute_of_day / 60) && bit(self.minutes, minute_of_day % 60)
    }

    /// The first firing time (Unix seconds, on a minute boundary) strictly after `unix_secs`,
    /// or `None` if the schedule never fires again (only for times near `u64::MAX`).
    pub fn next_after(&self, unix_secs: u64) -> Option<u64> {
        let start = (unix_secs / 60).checked_add(1)?.checked_mul(60)?;
        let first_day = start / DAY;
        let mut from_minute = start % DAY / 60;
        for day in first_day..first_day.checked_add(CYCLE_DAYS + 1)? {
            if self.day_matches(day) {
                for m in from_minute..24 * 60 {
                    if bit(self.hours, m / 60) && bit(self.minutes, m % 60) {
                        return day.checked_mul(DAY)?.checked_add(m * 60);
                    }
                }
            }
            from_minute = 0;
        }
        None
    }

    fn day_matches(&self, days_since_epoch: u64) -> bool {
        let (_, month, day) = civil_from_days(days_since_epoch);
        // 1970-01-01 was a Thursday (4).
        let weekday = (days_since_epoch + 4) % 7;
        let dom = bit(self.days_of_month, u64::from(day));
        let dow = bit(self.days_of_week, weekday);
        bit(self.months, u64::from(month)) && if self.day_or { dom || dow } else { dom && dow }
    }
}

impl FromStr for Cron {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Cron::parse(s)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn bit(set: u64, n: u64) -> bool {
    n < 64 && set & (1 << n) != 0
}

/// Parses one field into a bit set of the values it admits.
fn parse_field(field: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in field.split(',') {
        if item.is_empty() {
            return Err("empty list item".to_owned());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = number(s)?;
                if step == 0 {
                    return Err("step must be at least 1".to_owned());
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("range {a}-{b} runs backwards"));
            }
            (a, b)
        } else {
            let a = number(range)?;
            // `a/n` means from a to the end of the field, stepping by n.
            (a, if step.is_some() { spec.max } else { a })
        };
        for v in [lo, hi] {
            if v < spec.min || v > spec.max {
                return Err(format!("{v} is out of range {}-{}", spec.min, spec.max));
            }
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn number(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a number (names such as MON or JAN are not supported)"
        ));
    }
    text.parse().map_err(|_| format!("{text} is too large"))
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-03-01T00:00:00Z, a Friday.
    const MAR_1_2024: u64 = 1_709_251_200;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(MAR_1_2024 / DAY), (2024, 3, 1));
        assert_eq!(civil_from_days(MAR_1_2024 / DAY - 1), (2024, 2, 29));
    }

    #[test]
    fn daily_schedule() {
        let c = Cron::parse("10 0 * * *").unwrap();
        assert_eq!(c.next_after(MAR_1_2024), Some(MAR_1_2024 + 600));
        assert_eq!(c.next_after(MAR_1_2024 + 600), Some(MAR_1_2024 + DAY + 600));
        assert!(c.matches(MAR_1_2024 + 600 + 59));
        assert!(!c.matches(MAR_1_2024 + 660));
    }

    #[test]
    fn steps_lists_ranges_and_weekdays() {
        let c = Cron::parse("*/15 9-17 * * 1-5").unwrap();
        // Friday 09:00 is the first firing after midnight.
        assert_eq!(c.next_after(MAR_1_2024), Some(MAR_1_2024 + 9 * 3600));
        // After Friday 17:45 the next is Monday 09:00.
        assert_eq!(
            c.next_after(MAR_1_2024 + 17 * 3600 + 45 * 60),
            Some(MAR_1_2024 + 3 * DAY + 9 * 3600)
        );
        let sunday = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday,
            Cron {
                source: "0 0 * * 7".into(),
                ..Cron::parse("0 0 * * 0").unwrap()
            }
        );
        assert_eq!(sunday.next_after(MAR_1_2024), Some(MAR_1_2024 + 2 * DAY));
        // Both day fields restricted: the 1st of the month OR a Monday.
        let either = Cron::parse("0 0 1 * 1").unwrap();
        assert_eq!(either.next_after(MAR_1_2024 - 1), Some(MAR_1_2024));
        assert_eq!(either.next_after(MAR_1_2024), Some(MAR_1_2024 + 3 * DAY));
        assert!(Cron::parse("5,10-12/2 */6 1/10 1,6 *").is_ok());
        assert_eq!(
            Cron::parse("0 0 29 2 *").unwrap().next_after(MAR_1_2024),
            Some(1_835_395_200)
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(Cron::parse("10 0 * *").unwrap_err().contains("5 fields"));
        assert!(
            Cron::parse("60 0 * * *")
                .unwrap_err()
                .contains("minute field \"60\": 60 is out of range 0-59")
        );
        assert!(Cron::parse("0 24 * * *").unwrap_err().contains("hour"));
        assert!(Cron::parse("0 0 0 * *").unwrap_err().contains("day-of-month"));
        assert!(Cron::parse("0 0 * 13 *").unwrap_err().contains("month"));
        assert!(Cron::parse("0 0 * * 8").unwrap_err().contains("day-of-week"));
        assert!(Cron::parse("0 0 * JAN *").unwrap_err().contains("not supported"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
        assert!(Cron::parse("5-1 * * * *").unwrap_err().contains("backwards"));
        assert!(Cron::parse("1,,2 * * * *").unwrap_err().contains("empty"));
        assert!(Cron::parse("0 0 30 2 *").unwrap_err().contains("never fires"));
        let both = Cron::parse("99 99 * * *").unwrap_err();
        assert!(both.contains("minute") && both.contains("hour"), "{both}");
    }
}
