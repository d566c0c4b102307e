//! Schedules: when a flow runs on its own, as a fixed interval or a cron expression.
//!
//! A [`Schedule`] answers one question, "when is the next run after this instant?"
//! ([`Schedule::next_after`]), and previews a few runs ahead ([`Schedule::upcoming`]). It has
//! no clock of its own: every method takes the instant to count from, so the answers are the
//! same on every machine and in every test.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use weft::Schedule;
//!
//! let every_30s = Schedule::interval("30s")?;
//! let t = Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 10).unwrap();
//! let half_past = Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 30).unwrap();
//! assert_eq!(every_30s.next_after(t), Some(half_past));
//!
//! let weekdays_at_9 = Schedule::cron("0 9 * * 1-5")?.in_timezone("Europe/Berlin")?;
//! // Monday 4 May 2026, 09:00 in Berlin (summer time, UTC+2), is 07:00 UTC.
//! let tuesday_9_berlin = Utc.with_ymd_and_hms(2026, 5, 5, 7, 0, 0).unwrap();
//! assert_eq!(weekdays_at_9.next_after(t), Some(tuesday_9_berlin));
//! # Ok::<(), weft::ScheduleError>(())
//! ```
//!
//! # Intervals
//!
//! [`Schedule::interval`] (`"30s"`, `"5m"`, `"1h 30m"`, `"500ms"`, `"1d"`) and
//! [`Schedule::every`] (a [`Duration`]) fire every period, like Prefect's
//! `IntervalSchedule(interval=timedelta(minutes=1))` or `serve(interval=30)`.
//!
//! The fire times are `anchor + k × period` for every integer `k`, before and after the
//! anchor. The default anchor is the Unix epoch, 1970-01-01T00:00:00Z, so the grid does not
//! depend on when the process started: every 30s lands on :00 and :30 of each minute, every
//! 5m on :00, :05, :10, …, every 1h on the full hour and every 1d at midnight UTC.
//! [`Schedule::anchored_at`] moves the grid, for example to run every 1h at 17 minutes past.
//!
//! # Cron
//!
//! [`Schedule::cron`] reads a cron expression with the [croner](https://docs.rs/croner) crate:
//! five fields, `minute hour day-of-month month day-of-week` (`"*/5 * * * *"`,
//! `"0 9 * * 1-5"`), or six with seconds first (`"*/10 * * * * *"`, croner's optional seconds
//! field). Names (`MON`, `JAN`), nicknames (`@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`) and croner's extensions (`L`, `W`, `#`, `+`) work too; a seventh (year) field
//! does not. As in Vixie cron, when both day-of-month and day-of-week are restricted, a day
//! matching either one fires (prefix day-of-week with `+` to require both).
//!
//! A cron expression is read on the wall clock of its time zone: UTC unless
//! [`Schedule::in_timezone`] names an IANA zone such as `"Europe/Berlin"`. Fire times are
//! always returned as UTC instants.
//!
//! # Daylight saving time
//!
//! Intervals are absolute durations: time zones and daylight saving time never change them.
//! An interval of 1d stays exactly 24 hours apart, so its local wall clock time moves by an
//! hour when the clocks change; use a cron schedule in a time zone for "every day at 09:00
//! local time".
//!
//! A cron schedule in a zone with daylight saving time follows croner's documented rule (the
//! Open Cron Pattern Specification's and Vixie cron's):
//!
//! * A **fixed-time** expression, whose second, minute and hour are each a single number
//!   (`30 2 * * *`, `0 0 9 * * 1-5`):
//!   * a wall clock time that does not exist (the clocks spring forward over it) runs once, at
//!     the first instant after the gap on the same day;
//!   * a wall clock time that happens twice (the clocks fall back over it) runs once, at its
//!     first occurrence (still on summer time).
//! * Any other expression (a `*`, step, range or list in the second, minute or hour field:
//!   `*/15 * * * *`, `30 * * * *`, `0 1,2 * * *`):
//!   * times inside the gap are skipped;
//!   * times that happen twice run twice, once on each pass.
//!
//! For `30 2 * * *` in Europe/Berlin (UTC+1 in winter, UTC+2 in summer) that means:
//!
//! | local day  | 02:30 in Berlin                             | fire time (UTC)      |
//! |------------|---------------------------------------------|----------------------|
//! | 2026-03-28 | once, winter time (UTC+1)                   | 2026-03-28T01:30:00Z |
//! | 2026-03-29 | does not exist (02:00 jumps to 03:00): runs at 03:00 summer time | 2026-03-29T01:00:00Z |
//! | 2026-03-30 | once, summer time (UTC+2)                   | 2026-03-30T00:30:00Z |
//! | 2026-10-25 | twice (03:00 falls back to 02:00): runs on the first pass only | 2026-10-25T00:30:00Z |
//! | 2026-10-26 | once, winter time                           | 2026-10-26T01:30:00Z |
//!
//! # Storing a schedule
//!
//! [`Schedule::to_spec`] writes a schedule as one line of text, and [`str::parse`] (the
//! [`FromStr`] impl) reads it back into an equal schedule; serde serializes a schedule as the
//! same string. The format is:
//!
//! ```text
//! every <duration> [from <anchor>]
//! cron <expression> [in <time zone>]
//! ```
//!
//! * `<duration>`: a [humantime](https://docs.rs/humantime) duration, written by `to_spec`
//!   in humantime's canonical form (`30s`, `1h 30m`, `500ms`, `1day`);
//! * `<anchor>`: an RFC 3339 instant (`2026-01-01T00:00:00Z`, or with an offset such as
//!   `+02:00` when read); left out when it is the Unix epoch;
//! * `<expression>`: the cron fields separated by single spaces;
//! * `<time zone>`: an IANA name (`Europe/Berlin`); left out when it is `UTC`.
//!
//! Examples: `every 30s`, `every 1h 30m from 2026-01-01T00:17:00Z`,
//! `cron */5 * * * *`, `cron 0 9 * * 1-5 in America/New_York`. The keywords `every`, `from`,
//! `cron` and `in` are lower case when written and read in any case.

mod cron;
mod handle;
#[cfg(feature = "history")]
mod serve;

pub use handle::FlowHandle;

#[cfg(feature = "history")]
pub(crate) use serve::shutdown_signal;
#[cfg(feature = "history")]
pub use serve::{serve, Deployment, Overlap, ServeError, Server};
#[cfg(feature = "pipeline")]
pub(crate) use serve::{Finished, Start};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cron::CronTable;

const NANOS_PER_SEC: i128 = 1_000_000_000;

const INTERVAL_HELP: &str =
    "give a positive duration with a unit, such as \"30s\", \"5m\", \"1h 30m\", \"500ms\" or \"1d\"";
const CRON_HELP: &str = "write 5 fields, \"minute hour day-of-month month day-of-week\", such as \
     \"*/5 * * * *\" or \"0 9 * * 1-5\", or 6 with seconds first, such as \"*/10 * * * * *\"";
const TZ_HELP: &str =
    "use an IANA time zone name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"";
const SPEC_HELP: &str = "write \"every <duration> [from <RFC 3339 instant>]\" (such as \
     \"every 30s\" or \"every 1h from 2026-01-01T00:17:00Z\") or \"cron <expression> [in <IANA \
     time zone>]\" (such as \"cron */5 * * * *\" or \"cron 0 9 * * 1-5 in Europe/Berlin\")";

/// When a flow runs: every fixed interval, or at the times a cron expression names.
///
/// Build one with [`Schedule::interval`], [`Schedule::every`] or [`Schedule::cron`], ask it for
/// fire times with [`Schedule::next_after`] and [`Schedule::upcoming`], and store it as text
/// with [`Schedule::to_spec`] and [`str::parse`]. The [module documentation](self) explains
/// anchors, time zones and daylight saving time.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use weft::Schedule;
///
/// let schedule: Schedule = "cron */5 * * * *".parse()?;
/// let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 3, 0).unwrap();
/// let next: Vec<String> = schedule.upcoming(t, 2).iter().map(|t| t.to_rfc3339()).collect();
/// assert_eq!(next, ["2026-01-01T12:05:00+00:00", "2026-01-01T12:10:00+00:00"]);
/// assert_eq!(schedule.to_string(), "cron '*/5 * * * *' (UTC)");
/// # Ok::<(), weft::ScheduleError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Kind {
    Interval {
        every: Duration,
        anchor: DateTime<Utc>,
    },
    Cron {
        /// The expression as given, its fields joined by single spaces.
        expression: String,
        /// Boxed: croner's tables are a few hundred bytes.
        cron: Box<CronTable>,
    },
}

impl Schedule {
    /// Every `text`, a [humantime](https://docs.rs/humantime) duration such as `"30s"`,
    /// `"5m"`, `"1h 30m"`, `"500ms"` or `"1d"`, on a grid anchored at the Unix epoch (see
    /// [`Schedule::anchored_at`]).
    ///
    /// Fails when the text is not a duration (a unit is required: `"30"` is rejected) or is
    /// zero.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::interval("30s")?;
    /// let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 30).unwrap();
    /// // Strictly after `t`, on :00 and :30 of each minute.
    /// let next_minute = Utc.with_ymd_and_hms(2026, 1, 1, 12, 1, 0).unwrap();
    /// assert_eq!(schedule.next_after(t), Some(next_minute));
    ///
    /// let err = Schedule::interval("soon").unwrap_err();
    /// assert!(err.to_string().starts_with("invalid interval \"soon\""));
    /// assert!(Schedule::interval("0s").is_err());
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn interval(text: &str) -> Result<Schedule, ScheduleError> {
        let every =
            humantime::parse_duration(text.trim()).map_err(|e| ScheduleError::InvalidInterval {
                input: text.to_owned(),
                reason: e.to_string(),
            })?;
        if every.is_zero() {
            return Err(ScheduleError::InvalidInterval {
                input: text.to_owned(),
                reason: "it is zero".to_owned(),
            });
        }
        Ok(Schedule::interval_unchecked(every))
    }

    /// Every `period`, on a grid anchored at the Unix epoch (see [`Schedule::anchored_at`]).
    ///
    /// Fails when `period` is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::every(Duration::from_secs(90))?;
    /// assert_eq!(schedule, Schedule::interval("1m 30s")?);
    /// assert_eq!(schedule.to_spec(), "every 1m 30s");
    /// assert!(Schedule::every(Duration::ZERO).is_err());
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn every(period: Duration) -> Result<Schedule, ScheduleError> {
        if period.is_zero() {
            return Err(ScheduleError::InvalidInterval {
                input: humantime::format_duration(period).to_string(),
                reason: "it is zero".to_owned(),
            });
        }
        Ok(Schedule::interval_unchecked(period))
    }

    fn interval_unchecked(every: Duration) -> Schedule {
        Schedule {
            kind: Kind::Interval {
                every,
                anchor: DateTime::UNIX_EPOCH,
            },
        }
    }

    /// The same interval on a grid through `anchor`: it fires at `anchor + k × period` for
    /// every integer `k`, before the anchor as well as after it.
    ///
    /// A cron schedule is returned unchanged: its fire times are set by the calendar.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// // Every hour at 17 minutes past.
    /// let anchor = Utc.with_ymd_and_hms(2026, 1, 1, 0, 17, 0).unwrap();
    /// let schedule = Schedule::interval("1h")?.anchored_at(anchor);
    /// let t = Utc.with_ymd_and_hms(2025, 6, 1, 8, 30, 0).unwrap();
    /// let at_9_17 = Utc.with_ymd_and_hms(2025, 6, 1, 9, 17, 0).unwrap();
    /// assert_eq!(schedule.next_after(t), Some(at_9_17));
    /// assert_eq!(schedule.to_spec(), "every 1h from 2026-01-01T00:17:00Z");
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    #[must_use]
    pub fn anchored_at(self, anchor: DateTime<Utc>) -> Schedule {
        match self.kind {
            Kind::Interval { every, .. } => Schedule {
                kind: Kind::Interval { every, anchor },
            },
            kind @ Kind::Cron { .. } => Schedule { kind },
        }
    }

    /// At the times the cron `expression` names, read on the UTC wall clock (see
    /// [`Schedule::in_timezone`]).
    ///
    /// Five fields, `minute hour day-of-month month day-of-week`, or six with seconds first;
    /// the [module documentation](self#cron) lists what else croner accepts. Fails, with
    /// croner's reason, when the expression is not valid.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let at_half_past = Schedule::cron("30 * * * *")?;
    /// let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 30, 0).unwrap();
    /// let at_13_30 = Utc.with_ymd_and_hms(2026, 1, 1, 13, 30, 0).unwrap();
    /// assert_eq!(at_half_past.next_after(t), Some(at_13_30));
    ///
    /// // With seconds: every 10 seconds.
    /// let every_10s = Schedule::cron("*/10 * * * * *")?;
    /// let ten_s_later = Utc.with_ymd_and_hms(2026, 1, 1, 12, 30, 10).unwrap();
    /// assert_eq!(every_10s.next_after(t), Some(ten_s_later));
    ///
    /// let err = Schedule::cron("61 * * * *").unwrap_err();
    /// assert!(err.to_string().starts_with("invalid cron expression \"61 * * * *\""));
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn cron(expression: &str) -> Result<Schedule, ScheduleError> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expression: expression.to_owned(),
            reason,
        };
        let nickname = fields.len() == 1 && fields[0].starts_with('@');
        if fields.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        if !nickname && !(5..=6).contains(&fields.len()) {
            return Err(invalid(format!("it has {} fields", fields.len())));
        }
        let normalized = fields.join(" ");
        let cron = CronTable::parse(&normalized).map_err(|e| match e {
            ScheduleError::InvalidCron { reason, .. } => invalid(if nickname {
                "unknown nickname: croner knows @yearly, @annually, @monthly, @weekly, @daily \
                 and @hourly"
                    .to_owned()
            } else {
                reason
            }),
            other => other,
        })?;
        Ok(Schedule {
            kind: Kind::Cron {
                expression: normalized,
                cron: Box::new(cron),
            },
        })
    }

    /// The same cron schedule read on the wall clock of the IANA time zone `name`, such as
    /// `"Europe/Berlin"` or `"America/New_York"` (names are case-sensitive; the default is
    /// `"UTC"`). The [module documentation](self#daylight-saving-time) says what happens when
    /// the clocks change.
    ///
    /// Fails for an unknown name, and for an interval schedule, which no time zone changes.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::cron("0 9 * * *")?.in_timezone("America/New_York")?;
    /// let t = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
    /// // 09:00 EST is 14:00 UTC.
    /// let at_14_utc = Utc.with_ymd_and_hms(2026, 1, 15, 14, 0, 0).unwrap();
    /// assert_eq!(schedule.next_after(t), Some(at_14_utc));
    /// assert_eq!(schedule.to_spec(), "cron 0 9 * * * in America/New_York");
    ///
    /// assert!(Schedule::cron("0 9 * * *")?.in_timezone("Mars/Base").is_err());
    /// assert!(Schedule::interval("1h")?.in_timezone("Europe/Berlin").is_err());
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn in_timezone(self, name: &str) -> Result<Schedule, ScheduleError> {
        match self.kind {
            Kind::Interval { .. } => Err(ScheduleError::TimeZoneOnInterval {
                name: name.to_owned(),
            }),
            Kind::Cron { expression, cron } => Ok(Schedule {
                kind: Kind::Cron {
                    expression,
                    cron: Box::new(cron.in_zone(name)?),
                },
            }),
        }
    }

    /// The first fire time strictly after `t`, or `None` when there is none (a cron expression
    /// that matches no date before the year 5000, such as `0 0 30 2 *`, or an instant past
    /// what [`DateTime`] can hold).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::interval("30s")?;
    /// let on_the_grid = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    /// assert_eq!(
    ///     schedule.next_after(on_the_grid),
    ///     Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 30).unwrap())
    /// );
    /// assert_eq!(Schedule::cron("0 0 30 2 *")?.next_after(on_the_grid), None);
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Interval { every, anchor } => interval_next(*every, *anchor, t),
            Kind::Cron { cron, .. } => {
                let next = cron.next(t)?;
                if next > t {
                    Some(next)
                } else {
                    // Croner searches forwards on the wall clock from `t`; should it ever
                    // answer with an instant that is not later, search again from a second on,
                    // so a scheduler never sees a fire time it has already passed.
                    let retry = cron.next(t.checked_add_signed(chrono::TimeDelta::seconds(1))?)?;
                    (retry > t).then_some(retry)
                }
            }
        }
    }

    /// The next `n` fire times after `after` (strictly), earliest first; fewer when the
    /// schedule runs out (see [`Schedule::next_after`]).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::interval("1h 30m")?;
    /// let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let times = schedule.upcoming(t, 3);
    /// let hours: Vec<String> = times.iter().map(|t| t.format("%H:%M").to_string()).collect();
    /// assert_eq!(hours, ["01:30", "03:00", "04:30"]);
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n.min(1024));
        let mut t = after;
        while times.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    times.push(next);
                    t = next;
                }
                None => break,
            }
        }
        times
    }

    /// The period of an interval schedule; `None` for a cron schedule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weft::Schedule;
    ///
    /// assert_eq!(Schedule::interval("1m")?.period(), Some(Duration::from_secs(60)));
    /// assert_eq!(Schedule::cron("* * * * *")?.period(), None);
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn period(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Interval { every, .. } => Some(*every),
            Kind::Cron { .. } => None,
        }
    }

    /// The anchor of an interval schedule (the Unix epoch unless
    /// [`Schedule::anchored_at`] set another); `None` for a cron schedule.
    ///
    /// ```
    /// use chrono::DateTime;
    /// use weft::Schedule;
    ///
    /// assert_eq!(Schedule::interval("30s")?.anchor(), Some(DateTime::UNIX_EPOCH));
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn anchor(&self) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Interval { anchor, .. } => Some(*anchor),
            Kind::Cron { .. } => None,
        }
    }

    /// The expression of a cron schedule, its fields separated by single spaces; `None` for
    /// an interval schedule.
    ///
    /// ```
    /// use weft::Schedule;
    ///
    /// assert_eq!(Schedule::cron(" */5  * * * * ")?.cron_expression(), Some("*/5 * * * *"));
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn cron_expression(&self) -> Option<&str> {
        match &self.kind {
            Kind::Interval { .. } => None,
            Kind::Cron { expression, .. } => Some(expression),
        }
    }

    /// The IANA name of a cron schedule's time zone (`"UTC"` unless
    /// [`Schedule::in_timezone`] set another); `None` for an interval schedule.
    ///
    /// ```
    /// use weft::Schedule;
    ///
    /// let schedule = Schedule::cron("0 9 * * *")?.in_timezone("Europe/Berlin")?;
    /// assert_eq!(schedule.timezone(), Some("Europe/Berlin"));
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn timezone(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Interval { .. } => None,
            Kind::Cron { cron, .. } => Some(cron.zone_name()),
        }
    }

    /// The schedule as one line of text, for a database or a configuration file; parse it
    /// back with [`str::parse`]. The [module documentation](self#storing-a-schedule) gives the
    /// format.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use weft::Schedule;
    ///
    /// let anchor = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap();
    /// let anchored = Schedule::interval("30s")?.anchored_at(anchor);
    /// assert_eq!(anchored.to_spec(), "every 30s from 2026-01-01T00:00:05Z");
    /// assert_eq!(anchored.to_spec().parse::<Schedule>()?, anchored);
    ///
    /// let berlin = Schedule::cron("*/5 * * * *")?.in_timezone("Europe/Berlin")?;
    /// assert_eq!(berlin.to_spec(), "cron */5 * * * * in Europe/Berlin");
    /// assert_eq!(berlin.to_spec().parse::<Schedule>()?, berlin);
    /// # Ok::<(), weft::ScheduleError>(())
    /// ```
    pub fn to_spec(&self) -> String {
        match &self.kind {
            Kind::Interval { every, anchor } => {
                let mut spec = format!("every {}", humantime::format_duration(*every));
                if *anchor != DateTime::UNIX_EPOCH {
                    spec.push_str(" from ");
                    spec.push_str(&anchor.to_rfc3339_opts(SecondsFormat::AutoSi, true));
                }
                spec
            }
            Kind::Cron { expression, cron } => {
                if cron.is_utc() {
                    format!("cron {expression}")
                } else {
                    format!("cron {expression} in {}", cron.zone_name())
                }
            }
        }
    }
}

/// Reads the text [`Schedule::to_spec`] writes: `every <duration> [from <anchor>]` or
/// `cron <expression> [in <time zone>]`.
///
/// ```
/// use weft::Schedule;
///
/// let schedule: Schedule = "cron 0 9 * * 1-5 in America/New_York".parse()?;
/// assert_eq!(schedule, Schedule::cron("0 9 * * 1-5")?.in_timezone("America/New_York")?);
/// assert_eq!("every 1h 30m".parse::<Schedule>()?, Schedule::interval("90m")?);
/// assert!("hourly".parse::<Schedule>().is_err());
/// # Ok::<(), weft::ScheduleError>(())
/// ```
impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(spec: &str) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: &str| ScheduleError::InvalidSpec {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let tokens: Vec<&str> = spec.split_whitespace().collect();
        let Some((keyword, rest)) = tokens.split_first() else {
            return Err(invalid("it is empty"));
        };
        if keyword.eq_ignore_ascii_case("every") {
            if let Some(tz) = keyword_value(rest, "in") {
                return Err(ScheduleError::TimeZoneOnInterval { name: tz });
            }
            let (duration, anchor) = match rest.iter().position(|t| t.eq_ignore_ascii_case("from"))
            {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            if duration.is_empty() {
                return Err(invalid("the duration after \"every\" is missing"));
            }
            let schedule = Schedule::interval(&duration.join(" "))?;
            match anchor {
                None => Ok(schedule),
                Some([]) => Err(invalid("the instant after \"from\" is missing")),
                Some(anchor) => {
                    let text = anchor.join(" ");
                    let anchor = DateTime::parse_from_rfc3339(&text).map_err(|e| {
                        invalid(&format!(
                            "the anchor \"{text}\" is not an RFC 3339 instant such as \
                             \"2026-01-01T00:00:00Z\" ({e})"
                        ))
                    })?;
                    Ok(schedule.anchored_at(anchor.with_timezone(&Utc)))
                }
            }
        } else if keyword.eq_ignore_ascii_case("cron") {
            let (expression, tz) = match rest {
                [expression @ .., kw, tz] if kw.eq_ignore_ascii_case("in") => {
                    (expression, Some(*tz))
                }
                _ => (rest, None),
            };
            if expression.is_empty() {
                return Err(invalid("the expression after \"cron\" is missing"));
            }
            let schedule = Schedule::cron(&expression.join(" "))?;
            match tz {
                Some(tz) => schedule.in_timezone(tz),
                None => Ok(schedule),
            }
        } else {
            Err(invalid(&format!(
                "it starts with \"{keyword}\", not \"every\" or \"cron\""
            )))
        }
    }
}

/// The token after `keyword` in `tokens`, if `keyword` is there.
fn keyword_value(tokens: &[&str], keyword: &str) -> Option<String> {
    let i = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case(keyword))?;
    Some(tokens.get(i + 1).copied().unwrap_or_default().to_owned())
}

/// Human text: `every 30s`, `every 1h (anchored at 2026-01-01T00:17:00Z)`,
/// `cron '*/5 * * * *' (Europe/Berlin)`.
///
/// ```
/// use weft::Schedule;
///
/// assert_eq!(Schedule::interval("30s")?.to_string(), "every 30s");
/// let berlin = Schedule::cron("*/5 * * * *")?.in_timezone("Europe/Berlin")?;
/// assert_eq!(berlin.to_string(), "cron '*/5 * * * *' (Europe/Berlin)");
/// # Ok::<(), weft::ScheduleError>(())
/// ```
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Interval { every, anchor } => {
                write!(f, "every {}", humantime::format_duration(*every))?;
                if *anchor != DateTime::UNIX_EPOCH {
                    write!(
                        f,
                        " (anchored at {})",
                        anchor.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    )?;
                }
                Ok(())
            }
            Kind::Cron { expression, cron } => {
                write!(f, "cron '{expression}' ({})", cron.zone_name())
            }
        }
    }
}

/// `Schedule("every 30s")`: the spec, without croner's parsed tables.
impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.to_spec()).finish()
    }
}

/// Serializes as the [`Schedule::to_spec`] string.
impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_spec())
    }
}

/// Deserializes from a [`Schedule::to_spec`] string.
///
/// ```
/// use weft::Schedule;
///
/// let schedule: Schedule = serde_json::from_str("\"cron 0 9 * * * in Europe/Berlin\"").unwrap();
/// assert_eq!(serde_json::to_string(&schedule).unwrap(), "\"cron 0 9 * * * in Europe/Berlin\"");
/// ```
impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Schedule, D::Error> {
        let spec = String::deserialize(deserializer)?;
        spec.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a schedule could not be built or read; the message quotes the input and says what is
/// accepted.
///
/// ```
/// use weft::{Schedule, ScheduleError};
///
/// let err = Schedule::cron("0 9 * * *").unwrap().in_timezone("Mars/Base").unwrap_err();
/// assert!(matches!(err, ScheduleError::UnknownTimeZone { .. }));
/// assert_eq!(
///     err.to_string(),
///     "unknown time zone \"Mars/Base\": use an IANA time zone name such as \"Europe/Berlin\", \
///      \"America/New_York\" or \"UTC\""
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An interval that humantime cannot read, or that is zero.
    InvalidInterval {
        /// The interval as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cron expression given to a build of weft without its `cron` feature.
    CronNotEnabled {
        /// The expression as given.
        expression: String,
    },
    /// A cron expression that croner rejects.
    InvalidCron {
        /// The expression as given.
        expression: String,
        /// What is wrong with it (croner's reason, or the number of fields).
        reason: String,
    },
    /// A time zone name that is not in the IANA database.
    UnknownTimeZone {
        /// The name as given.
        name: String,
        /// A known name that differs only in case, if there is one.
        suggestion: Option<String>,
    },
    /// A time zone given to an interval schedule, which no time zone changes.
    TimeZoneOnInterval {
        /// The time zone name as given.
        name: String,
    },
    /// Text that is not a schedule spec.
    InvalidSpec {
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::InvalidInterval { input, reason } => {
                write!(f, "invalid interval \"{input}\": {reason}; {INTERVAL_HELP}")
            }
            ScheduleError::InvalidCron { expression, reason } => {
                write!(f, "invalid cron expression \"{expression}\": {reason}; {CRON_HELP}")
            }
            ScheduleError::CronNotEnabled { expression } => write!(
                f,
                "cron expression \"{expression}\" cannot be read: this build of weft leaves cron \
                 schedules out; turn on the `cron` feature (weft = {{ version = \"0.1\", \
                 features = [\"cron\"] }}) or use an interval such as \"every 5m\""
            ),
            ScheduleError::UnknownTimeZone { name, suggestion } => match suggestion {
                Some(known) => write!(
                    f,
                    "unknown time zone \"{name}\": names are case-sensitive, did you mean \"{known}\"?"
                ),
                None => write!(f, "unknown time zone \"{name}\": {TZ_HELP}"),
            },
            ScheduleError::TimeZoneOnInterval { name } => write!(
                f,
                "time zone \"{name}\" given to an interval schedule: intervals are absolute \
                 durations that no time zone changes; leave the time zone out, or use a cron \
                 schedule to run at wall clock times in \"{name}\""
            ),
            ScheduleError::InvalidSpec { spec, reason } => {
                write!(f, "invalid schedule \"{spec}\": {reason}; {SPEC_HELP}")
            }
        }
    }
}

impl std::error::Error for ScheduleError {}

/// The first `anchor + k × every` strictly after `t`, computed in nanoseconds.
fn interval_next(
    every: Duration,
    anchor: DateTime<Utc>,
    t: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let period = i128::try_from(every.as_nanos()).ok()?;
    let anchor = nanos(anchor);
    let k = (nanos(t) - anchor).div_euclid(period) + 1;
    let next = k.checked_mul(period)?.checked_add(anchor)?;
    let secs = i64::try_from(next.div_euclid(NANOS_PER_SEC)).ok()?;
    let subsec = u32::try_from(next.rem_euclid(NANOS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, subsec)
}

fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

/// Without the `cron` feature intervals work and a cron expression says which feature to add.
#[cfg(all(test, not(feature = "cron")))]
mod without_cron {
    use super::*;

    #[test]
    fn cron_expressions_name_the_feature_and_intervals_still_work() {
        let err = Schedule::cron("*/5 * * * *").unwrap_err();
        assert!(matches!(err, ScheduleError::CronNotEnabled { .. }));
        assert!(
            err.to_string().contains("turn on the `cron` feature"),
            "{err}"
        );
        let from_spec = "cron 0 9 * * 1-5 in Europe/Berlin"
            .parse::<Schedule>()
            .unwrap_err();
        assert_eq!(from_spec, err_for("0 9 * * 1-5"));
        let every = "every 5m".parse::<Schedule>().unwrap();
        let t = DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(every.next_after(t), DateTime::from_timestamp(1_200, 0));
    }

    fn err_for(expression: &str) -> ScheduleError {
        ScheduleError::CronNotEnabled {
            expression: expression.to_owned(),
        }
    }
}

#[cfg(all(test, feature = "cron"))]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn iso(times: &[DateTime<Utc>]) -> Vec<String> {
        times
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .collect()
    }

    #[test]
    fn interval_30s_lands_on_00_and_30_from_the_epoch() {
        let s = Schedule::interval("30s").unwrap();
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 12, 0, 10)),
            Some(utc(2026, 1, 1, 12, 0, 30))
        );
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 12, 0, 29)),
            Some(utc(2026, 1, 1, 12, 0, 30))
        );
        // Strictly after: a time on the grid gives the next one.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 12, 0, 30)),
            Some(utc(2026, 1, 1, 12, 1, 0))
        );
        let just_after = utc(2026, 1, 1, 12, 0, 30) + chrono::TimeDelta::nanoseconds(1);
        assert_eq!(s.next_after(just_after), Some(utc(2026, 1, 1, 12, 1, 0)));
        let just_before = utc(2026, 1, 1, 12, 0, 30) - chrono::TimeDelta::nanoseconds(1);
        assert_eq!(s.next_after(just_before), Some(utc(2026, 1, 1, 12, 0, 30)));
        assert_eq!(
            iso(&s.upcoming(utc(2026, 1, 1, 12, 0, 1), 4)),
            [
                "2026-01-01T12:00:30Z",
                "2026-01-01T12:01:00Z",
                "2026-01-01T12:01:30Z",
                "2026-01-01T12:02:00Z"
            ]
        );
        assert_eq!(s.anchor(), Some(DateTime::UNIX_EPOCH));
        assert_eq!(s.period(), Some(Duration::from_secs(30)));
    }

    #[test]
    fn interval_accepts_humantime_forms() {
        let cases = [
            ("30s", 30_000),
            ("1h 30m", 5_400_000),
            ("500ms", 500),
            ("1d", 86_400_000),
            ("  5m ", 300_000),
            ("1min 2s", 62_000),
        ];
        for (text, millis) in cases {
            let s = Schedule::interval(text).unwrap();
            assert_eq!(s.period(), Some(Duration::from_millis(millis)), "{text}");
        }
        assert_eq!(
            Schedule::every(Duration::from_secs(30)).unwrap(),
            Schedule::interval("30s").unwrap()
        );
    }

    #[test]
    fn interval_sub_second_and_day_grids() {
        let ms = Schedule::interval("500ms").unwrap();
        assert_eq!(
            iso(&ms.upcoming(utc(2026, 1, 1, 0, 0, 0), 3)),
            [
                "2026-01-01T00:00:00.500Z",
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:01.500Z"
            ]
        );
        // Every day: midnight UTC, whatever the time zone.
        let daily = Schedule::interval("1d").unwrap();
        assert_eq!(
            daily.next_after(utc(2026, 3, 28, 23, 0, 0)),
            Some(utc(2026, 3, 29, 0, 0, 0))
        );
        assert_eq!(
            daily.next_after(utc(2026, 3, 29, 0, 0, 0)),
            Some(utc(2026, 3, 30, 0, 0, 0))
        );
        // Every 7 minutes does not divide an hour: the grid still runs from the epoch.
        // 2026-01-01T00:00:00Z is 1_767_225_600 s = 4_207_680 × 420 s after the epoch.
        let seven = Schedule::interval("7m").unwrap();
        assert_eq!(
            iso(&seven.upcoming(utc(2025, 12, 31, 23, 59, 0), 2)),
            ["2026-01-01T00:00:00Z", "2026-01-01T00:07:00Z"]
        );
    }

    #[test]
    fn interval_custom_anchor() {
        let anchor = utc(2026, 1, 1, 0, 0, 5);
        let s = Schedule::interval("30s").unwrap().anchored_at(anchor);
        assert_eq!(s.anchor(), Some(anchor));
        assert_eq!(
            iso(&s.upcoming(utc(2026, 1, 1, 0, 0, 5), 3)),
            [
                "2026-01-01T00:00:35Z",
                "2026-01-01T00:01:05Z",
                "2026-01-01T00:01:35Z"
            ]
        );
        let hourly_17 = Schedule::interval("1h")
            .unwrap()
            .anchored_at(utc(2026, 1, 1, 0, 17, 0));
        assert_eq!(
            hourly_17.next_after(utc(2026, 5, 4, 9, 17, 0)),
            Some(utc(2026, 5, 4, 10, 17, 0))
        );
    }

    #[test]
    fn interval_times_before_the_anchor() {
        let s = Schedule::interval("1h")
            .unwrap()
            .anchored_at(utc(2026, 1, 1, 0, 17, 0));
        // A year before the anchor the grid is the same: 17 minutes past each hour.
        assert_eq!(
            iso(&s.upcoming(utc(2025, 1, 1, 8, 0, 0), 2)),
            ["2025-01-01T08:17:00Z", "2025-01-01T09:17:00Z"]
        );
        // Right before the anchor: the anchor itself.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 16, 59)),
            Some(utc(2026, 1, 1, 0, 17, 0))
        );
        // Before the epoch, with the default anchor.
        let every_30s = Schedule::interval("30s").unwrap();
        assert_eq!(
            every_30s.next_after(utc(1969, 12, 31, 23, 59, 40)),
            Some(utc(1970, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            every_30s.next_after(utc(1969, 12, 31, 23, 59, 10)),
            Some(utc(1969, 12, 31, 23, 59, 30))
        );
    }

    #[test]
    fn interval_at_the_end_of_time_is_none() {
        let s = Schedule::interval("1d").unwrap();
        assert_eq!(s.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(s.upcoming(DateTime::<Utc>::MAX_UTC, 3).len(), 0);
        let huge = Schedule::every(Duration::MAX).unwrap();
        assert_eq!(huge.next_after(utc(2026, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn anchored_at_leaves_a_cron_schedule_alone() {
        let cron = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(cron.clone().anchored_at(utc(2026, 1, 1, 0, 1, 0)), cron);
    }

    #[test]
    fn cron_every_five_minutes() {
        let s = Schedule::cron("*/5 * * * *").unwrap();
        assert_eq!(
            iso(&s.upcoming(utc(2026, 1, 1, 12, 3, 17), 4)),
            [
                "2026-01-01T12:05:00Z",
                "2026-01-01T12:10:00Z",
                "2026-01-01T12:15:00Z",
                "2026-01-01T12:20:00Z"
            ]
        );
        // Strictly after, also with sub-second parts.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 12, 5, 0)),
            Some(utc(2026, 1, 1, 12, 10, 0))
        );
        let half_past = utc(2026, 1, 1, 12, 5, 0) + chrono::TimeDelta::milliseconds(500);
        assert_eq!(s.next_after(half_past), Some(utc(2026, 1, 1, 12, 10, 0)));
        let just_before = utc(2026, 1, 1, 12, 5, 0) - chrono::TimeDelta::milliseconds(500);
        assert_eq!(s.next_after(just_before), Some(utc(2026, 1, 1, 12, 5, 0)));
        // Across midnight and a year.
        assert_eq!(
            iso(&s.upcoming(utc(2026, 12, 31, 23, 54, 0), 2)),
            ["2026-12-31T23:55:00Z", "2027-01-01T00:00:00Z"]
        );
        assert_eq!(s.cron_expression(), Some("*/5 * * * *"));
        assert_eq!(s.timezone(), Some("UTC"));
        assert_eq!(s.period(), None);
        assert_eq!(s.anchor(), None);
    }

    #[test]
    fn cron_with_seconds_and_nicknames() {
        let s = Schedule::cron("*/20 * * * * *").unwrap();
        assert_eq!(
            iso(&s.upcoming(utc(2026, 1, 1, 0, 0, 0), 3)),
            [
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:40Z",
                "2026-01-01T00:01:00Z"
            ]
        );
        let daily = Schedule::cron("@daily").unwrap();
        assert_eq!(
            daily.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 2, 0, 0, 0))
        );
        let weekdays = Schedule::cron("0 9 * * mon-fri").unwrap();
        assert_eq!(weekdays.cron_expression(), Some("0 9 * * mon-fri"));
        // Saturday 2026-01-03 → Monday 2026-01-05.
        assert_eq!(
            weekdays.next_after(utc(2026, 1, 3, 0, 0, 0)),
            Some(utc(2026, 1, 5, 9, 0, 0))
        );
    }

    #[test]
    fn cron_in_new_york_across_a_weekend() {
        let s = Schedule::cron("0 9 * * 1-5")
            .unwrap()
            .in_timezone("America/New_York")
            .unwrap();
        // Friday 2026-01-09 10:00 EST (15:00 UTC): the next runs are Monday to Wednesday,
        // 09:00 EST = 14:00 UTC.
        assert_eq!(
            iso(&s.upcoming(utc(2026, 1, 9, 15, 0, 0), 3)),
            [
                "2026-01-12T14:00:00Z",
                "2026-01-13T14:00:00Z",
                "2026-01-14T14:00:00Z"
            ]
        );
        // In summer (EDT, UTC-4): Friday 2026-07-10 after the run → Monday 13:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 7, 10, 13, 0, 0)),
            Some(utc(2026, 7, 13, 13, 0, 0))
        );
        // Friday 08:59 EST is before Friday's run.
        assert_eq!(
            s.next_after(utc(2026, 1, 9, 13, 59, 0)),
            Some(utc(2026, 1, 9, 14, 0, 0))
        );
    }

    #[test]
    fn cron_that_never_fires_is_none() {
        let s = Schedule::cron("0 0 30 2 *").unwrap();
        assert_eq!(s.next_after(utc(2026, 1, 1, 0, 0, 0)), None);
        assert_eq!(s.upcoming(utc(2026, 1, 1, 0, 0, 0), 2).len(), 0);
    }

    fn berlin_daily_0230() -> Schedule {
        Schedule::cron("30 2 * * *")
            .unwrap()
            .in_timezone("Europe/Berlin")
            .unwrap()
    }

    #[test]
    fn dst_spring_forward_runs_once_right_after_the_gap() {
        // 2026-03-29: Berlin's clocks jump from 02:00 CET (UTC+1) to 03:00 CEST (UTC+2), so
        // 02:30 does not exist. The fixed-time job runs at 03:00 CEST = 01:00 UTC.
        let s = berlin_daily_0230();
        assert_eq!(
            iso(&s.upcoming(utc(2026, 3, 27, 12, 0, 0), 4)),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, right after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
        // Asked from inside the day, before and after the moved run.
        assert_eq!(
            s.next_after(utc(2026, 3, 29, 0, 59, 59)),
            Some(utc(2026, 3, 29, 1, 0, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 3, 29, 1, 0, 0)),
            Some(utc(2026, 3, 30, 0, 30, 0))
        );
    }

    #[test]
    fn dst_fall_back_runs_once_on_the_first_pass() {
        // 2026-10-25: Berlin's clocks fall back from 03:00 CEST (UTC+2) to 02:00 CET (UTC+1),
        // so 02:30 happens at 00:30 UTC and again at 01:30 UTC. The fixed-time job runs only
        // at the first, 00:30 UTC.
        let s = berlin_daily_0230();
        assert_eq!(
            iso(&s.upcoming(utc(2026, 10, 23, 12, 0, 0), 4)),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST, first pass
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
        // Not again at the second pass, from either side of the first one.
        assert_eq!(
            s.next_after(utc(2026, 10, 25, 0, 30, 0)),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 10, 25, 1, 0, 0)),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 10, 25, 1, 29, 59)),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
    }

    #[test]
    fn dst_wildcard_hours_skip_the_gap_and_repeat_the_overlap() {
        // Minute 30 of every hour is an interval/wildcard job: 02:30 is skipped in spring and
        // runs on both passes in autumn, so in UTC it is simply every hour at :30.
        let s = Schedule::cron("30 * * * *")
            .unwrap()
            .in_timezone("Europe/Berlin")
            .unwrap();
        assert_eq!(
            iso(&s.upcoming(utc(2026, 3, 29, 0, 0, 0), 2)),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:30:00Z", // 03:30 CEST (02:30 does not exist)
            ]
        );
        assert_eq!(
            iso(&s.upcoming(utc(2026, 10, 24, 23, 0, 0), 4)),
            [
                "2026-10-24T23:30:00Z", // 01:30 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST, first pass
                "2026-10-25T01:30:00Z", // 02:30 CET, second pass
                "2026-10-25T02:30:00Z", // 03:30 CET
            ]
        );
    }

    #[test]
    fn dst_does_not_move_intervals() {
        // 24 hours apart across Berlin's spring-forward day; intervals have no time zone.
        let s = Schedule::interval("1d")
            .unwrap()
            .anchored_at(utc(2026, 1, 1, 1, 30, 0));
        assert_eq!(
            iso(&s.upcoming(utc(2026, 3, 28, 0, 0, 0), 3)),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T01:30:00Z"
            ]
        );
    }

    #[test]
    fn bad_intervals_are_rejected_with_the_input_quoted() {
        for text in ["0s", "0 ms", "soon", "", "30", "-5s", "5 parsecs"] {
            let err = Schedule::interval(text).unwrap_err();
            assert!(
                matches!(&err, ScheduleError::InvalidInterval { input, .. } if input == text),
                "{text}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid interval \"{text}\": ")),
                "{msg}"
            );
            assert!(
                msg.contains("\"30s\", \"5m\", \"1h 30m\", \"500ms\" or \"1d\""),
                "{msg}"
            );
        }
        assert!(Schedule::interval("0s")
            .unwrap_err()
            .to_string()
            .contains("it is zero"));
        assert!(Schedule::every(Duration::ZERO).is_err());
    }

    #[test]
    fn bad_cron_expressions_are_rejected_with_croners_reason() {
        let err = Schedule::cron("61 * * * *").unwrap_err();
        let ScheduleError::InvalidCron { expression, reason } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(expression, "61 * * * *");
        assert!(!reason.is_empty());
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid cron expression \"61 * * * *\": "),
            "{msg}"
        );
        assert!(msg.contains(reason.as_str()), "{msg}");
        assert!(
            msg.contains("\"minute hour day-of-month month day-of-week\""),
            "{msg}"
        );

        assert_eq!(
            Schedule::cron("61 * * * *")
                .unwrap_err()
                .to_string()
                .split("; ")
                .next(),
            Some("invalid cron expression \"61 * * * *\": Component error: Number out of bounds")
        );
        let err = Schedule::cron("@often").unwrap_err();
        assert!(err.to_string().contains("unknown nickname"), "{err}");

        let err = Schedule::cron("* * *").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::InvalidCron {
                expression: "* * *".into(),
                reason: "it has 3 fields".into()
            }
        );
        for bad in [
            "",
            "   ",
            "* * * * * * *",
            "*/0 * * * *",
            "x * * * *",
            "@often",
            "0 25 * * *",
        ] {
            assert!(
                matches!(Schedule::cron(bad), Err(ScheduleError::InvalidCron { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_time_zones_are_rejected() {
        let cron = Schedule::cron("0 9 * * *").unwrap();
        let err = cron.clone().in_timezone("Mars/Base").unwrap_err();
        assert_eq!(
            err,
            ScheduleError::UnknownTimeZone {
                name: "Mars/Base".into(),
                suggestion: None
            }
        );
        assert!(err.to_string().contains("\"Mars/Base\""));
        let err = cron.in_timezone("europe/berlin").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"europe/berlin\": names are case-sensitive, did you mean \
             \"Europe/Berlin\"?"
        );
        let err = Schedule::interval("1h")
            .unwrap()
            .in_timezone("Europe/Berlin")
            .unwrap_err();
        assert_eq!(
            err,
            ScheduleError::TimeZoneOnInterval {
                name: "Europe/Berlin".into()
            }
        );
    }

    #[test]
    fn spec_round_trips() {
        let schedules = [
            Schedule::interval("30s").unwrap(),
            Schedule::interval("1h 30m").unwrap(),
            Schedule::interval("500ms").unwrap(),
            Schedule::interval("1d").unwrap(),
            Schedule::interval("1y 3M 2w 5d 7h 11m 13s 17ms 19us 23ns").unwrap(),
            Schedule::every(Duration::new(1, 1)).unwrap(),
            Schedule::every(Duration::MAX).unwrap(),
            Schedule::interval("30s")
                .unwrap()
                .anchored_at(utc(2026, 1, 1, 0, 0, 0)),
            Schedule::interval("30s").unwrap().anchored_at(
                utc(2026, 1, 1, 0, 0, 0) + chrono::TimeDelta::nanoseconds(123_456_789),
            ),
            Schedule::interval("1h")
                .unwrap()
                .anchored_at(utc(1900, 6, 1, 12, 0, 0)),
            Schedule::cron("*/5 * * * *").unwrap(),
            Schedule::cron("*/10 * * * * *").unwrap(),
            Schedule::cron("@daily").unwrap(),
            Schedule::cron("0 9 * * MON-FRI").unwrap(),
            Schedule::cron("*/5 * * * *")
                .unwrap()
                .in_timezone("Europe/Berlin")
                .unwrap(),
            Schedule::cron("0 9 * * 1-5")
                .unwrap()
                .in_timezone("America/New_York")
                .unwrap(),
            Schedule::cron("0 0 * * *")
                .unwrap()
                .in_timezone("Etc/UTC")
                .unwrap(),
        ];
        for s in schedules {
            let spec = s.to_spec();
            let back: Schedule = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(back, s, "{spec}");
            assert_eq!(back.to_spec(), spec);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{spec}\""));
            assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
        }
    }

    #[test]
    fn spec_format() {
        let berlin = Schedule::cron("*/5 * * * *")
            .unwrap()
            .in_timezone("Europe/Berlin")
            .unwrap();
        assert_eq!(berlin.to_spec(), "cron */5 * * * * in Europe/Berlin");
        assert_eq!(berlin.to_string(), "cron '*/5 * * * *' (Europe/Berlin)");
        assert_eq!(
            format!("{berlin:?}"),
            "Schedule(\"cron */5 * * * * in Europe/Berlin\")"
        );

        let every = Schedule::interval("30s").unwrap();
        assert_eq!(every.to_spec(), "every 30s");
        assert_eq!(every.to_string(), "every 30s");
        let anchored = every.anchored_at(utc(2026, 1, 1, 0, 0, 0));
        assert_eq!(anchored.to_spec(), "every 30s from 2026-01-01T00:00:00Z");
        assert_eq!(
            anchored.to_string(),
            "every 30s (anchored at 2026-01-01T00:00:00Z)"
        );
        assert_eq!(Schedule::interval("90m").unwrap().to_spec(), "every 1h 30m");
        assert_eq!(Schedule::interval("1d").unwrap().to_spec(), "every 1day");
        assert_eq!(
            Schedule::cron(" 0  9 * * * ").unwrap().to_spec(),
            "cron 0 9 * * *"
        );

        // Read leniently: keywords in any case, extra spaces, offsets and the epoch anchor.
        let read = |s: &str| s.parse::<Schedule>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(read("  EVERY   30s  "), Schedule::interval("30s").unwrap());
        assert_eq!(
            read("every 30s from 1970-01-01T00:00:00Z").to_spec(),
            "every 30s"
        );
        assert_eq!(
            read("every 30s FROM 2026-01-01T02:00:00+02:00").to_spec(),
            "every 30s from 2026-01-01T00:00:00Z"
        );
        assert_eq!(read("Cron */5 * * * * IN Europe/Berlin"), berlin);
        assert_eq!(read("cron 0 0 * * * in UTC").to_spec(), "cron 0 0 * * *");
    }

    #[test]
    fn bad_specs_are_rejected() {
        let kind = |s: &str| s.parse::<Schedule>().unwrap_err();
        assert!(matches!(kind(""), ScheduleError::InvalidSpec { .. }));
        assert!(matches!(kind("hourly"), ScheduleError::InvalidSpec { .. }));
        assert!(matches!(kind("every"), ScheduleError::InvalidSpec { .. }));
        assert!(matches!(
            kind("every 30s from"),
            ScheduleError::InvalidSpec { .. }
        ));
        assert!(matches!(
            kind("every 30s from yesterday"),
            ScheduleError::InvalidSpec { .. }
        ));
        assert!(matches!(kind("cron"), ScheduleError::InvalidSpec { .. }));
        assert!(matches!(
            kind("cron in Europe/Berlin"),
            ScheduleError::InvalidSpec { .. }
        ));
        assert!(matches!(
            kind("every soon"),
            ScheduleError::InvalidInterval { .. }
        ));
        assert!(matches!(
            kind("every 0s"),
            ScheduleError::InvalidInterval { .. }
        ));
        assert!(matches!(
            kind("cron * * *"),
            ScheduleError::InvalidCron { .. }
        ));
        assert!(matches!(
            kind("cron 61 * * * *"),
            ScheduleError::InvalidCron { .. }
        ));
        assert!(matches!(
            kind("cron * * * * * in Mars/Base"),
            ScheduleError::UnknownTimeZone { .. }
        ));
        assert!(matches!(
            kind("every 30s in Europe/Berlin"),
            ScheduleError::TimeZoneOnInterval { .. }
        ));
        let msg = kind("hourly").to_string();
        assert!(
            msg.starts_with("invalid schedule \"hourly\": it starts with \"hourly\""),
            "{msg}"
        );
        assert!(
            msg.contains("every <duration>") && msg.contains("cron <expression>"),
            "{msg}"
        );
        let msg = kind("every 30s from yesterday").to_string();
        assert!(msg.contains("the anchor \"yesterday\""), "{msg}");
        assert!(serde_json::from_str::<Schedule>("\"hourly\"").is_err());
    }

    #[test]
    fn upcoming_returns_n_times_in_order() {
        let s = Schedule::cron("0 * * * *").unwrap();
        assert_eq!(s.upcoming(utc(2026, 1, 1, 0, 0, 0), 0).len(), 0);
        let times = s.upcoming(utc(2026, 1, 1, 0, 0, 0), 30);
        assert_eq!(times.len(), 30);
        assert!(times
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::TimeDelta::hours(1)));
        assert_eq!(times[0], utc(2026, 1, 1, 1, 0, 0));
        assert_eq!(times[29], utc(2026, 1, 2, 6, 0, 0));
        let i = Schedule::interval("45s").unwrap();
        assert_eq!(
            iso(&i.upcoming(utc(2026, 1, 1, 0, 0, 0), 3)),
            [
                "2026-01-01T00:00:45Z",
                "2026-01-01T00:01:30Z",
                "2026-01-01T00:02:15Z"
            ]
        );
    }
}
