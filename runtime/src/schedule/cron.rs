//! A cron expression's table and its time zone: croner and chrono-tz, with the `cron` feature.
//! Without it [`CronTable`] has no values, so no cron schedule exists, and asking for one says
//! which feature to add.

#[cfg(feature = "cron")]
pub(crate) use with_feature::CronTable;
#[cfg(not(feature = "cron"))]
pub(crate) use without_feature::CronTable;

#[cfg(feature = "cron")]
mod with_feature {
    use super::super::ScheduleError;
    use chrono::{DateTime, Utc};
    use chrono_tz::Tz;
    use croner::parser::{CronParser, Seconds, Year};

    /// Boxed by its holder: croner's tables are a few hundred bytes.
    #[derive(Clone, PartialEq, Eq, Hash)]
    pub(crate) struct CronTable {
        table: croner::Cron,
        zone: Tz,
    }

    impl CronTable {
        /// Five or six fields (seconds optional, no year), read in UTC; Err: croner's reason.
        pub(crate) fn parse(expression: &str) -> Result<CronTable, ScheduleError> {
            let table = CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Disallowed)
                .build()
                .parse(expression)
                .map_err(|e| ScheduleError::InvalidCron {
                    expression: expression.to_owned(),
                    reason: e.to_string().trim_end_matches('.').to_owned(),
                })?;
            Ok(CronTable {
                table,
                zone: Tz::UTC,
            })
        }

        /// The same table read on the wall clock of the IANA zone `name`.
        pub(crate) fn in_zone(self, name: &str) -> Result<CronTable, ScheduleError> {
            let zone = name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::UnknownTimeZone {
                    name: name.to_owned(),
                    suggestion: chrono_tz::TZ_VARIANTS
                        .iter()
                        .find(|tz| tz.name().eq_ignore_ascii_case(name))
                        .map(|tz| tz.name().to_owned()),
                })?;
            Ok(CronTable { zone, ..self })
        }

        pub(crate) fn zone_name(&self) -> &'static str {
            self.zone.name()
        }

        pub(crate) fn is_utc(&self) -> bool {
            self.zone == Tz::UTC
        }

        /// The first fire time after `t` as croner finds it, searching the zone's wall clock.
        pub(crate) fn next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
            self.table
                .find_next_occurrence(&t.with_timezone(&self.zone), false)
                .ok()
                .map(|next| next.with_timezone(&Utc))
        }
    }
}

#[cfg(not(feature = "cron"))]
mod without_feature {
    use super::super::ScheduleError;
    use chrono::{DateTime, Utc};

    /// No values: a cron schedule cannot be made without the `cron` feature.
    #[derive(Clone, PartialEq, Eq, Hash)]
    pub(crate) enum CronTable {}

    impl CronTable {
        pub(crate) fn parse(expression: &str) -> Result<CronTable, ScheduleError> {
            Err(ScheduleError::CronNotEnabled {
                expression: expression.to_owned(),
            })
        }

        pub(crate) fn in_zone(self, _: &str) -> Result<CronTable, ScheduleError> {
            match self {}
        }

        pub(crate) fn zone_name(&self) -> &'static str {
            match *self {}
        }

        pub(crate) fn is_utc(&self) -> bool {
            match *self {}
        }

        pub(crate) fn next(&self, _: DateTime<Utc>) -> Option<DateTime<Utc>> {
            match *self {}
        }
    }
}
