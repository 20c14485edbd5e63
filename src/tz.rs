//! IANA time zones for chrono, from a compact copy of the tz database
//! built into the binary (`jiff`'s bundled one: the compiled zone files,
//! about 200 KB, read when a zone is first named). It replaces
//! `chrono-tz`, whose database is generated Rust data: some 66,000 entries
//! each with a pointer, about 1.9 MB of the binary with their relocations.
//!
//! The behaviour is the same: zones are named exactly as in the tz
//! database (links such as `US/Eastern` included), and the machine's own
//! zoneinfo is never read, so a host without tzdata schedules as any
//! other. [`Zone`] implements [`chrono::TimeZone`]: a local time in a DST
//! gap has no offset, one in a repeated hour has two (earlier first), and
//! `%Z` shows the zone's abbreviation.

use std::fmt;

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, TimeZone};
use jiff::tz::AmbiguousOffset;

/// An IANA time zone.
#[derive(Clone, Debug)]
pub struct Zone(jiff::tz::TimeZone);

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Zone {}

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone(jiff::tz::TimeZone::UTC)
    }

    /// The zone of this exact name (the tz database's spelling), if any.
    pub fn get(name: &str) -> Option<Zone> {
        let tz = jiff::tz::db().get(name).ok()?;
        (tz.iana_name() == Some(name)).then_some(Zone(tz))
    }

    /// Its tz database name, e.g. `Europe/Berlin`.
    pub fn name(&self) -> &str {
        self.0.iana_name().unwrap_or("UTC")
    }

    /// Every zone name the database has.
    pub fn names() -> Vec<String> {
        jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_owned())
            .collect()
    }

    fn offset_at(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let seconds = utc.and_utc().timestamp();
        let at = jiff::Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        let info = self.0.to_offset_info(at);
        ZoneOffset {
            zone: self.clone(),
            fixed: fixed(info.offset()),
            abbreviation: info.abbreviation().into(),
        }
    }

    /// The offset a UTC instant has, for a local time of the given offset.
    fn local_offset(&self, local: &NaiveDateTime, offset: jiff::tz::Offset) -> ZoneOffset {
        self.offset_at(&(*local - fixed(offset)))
    }
}

fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    use chrono::Offset;
    FixedOffset::east_opt(offset.seconds()).unwrap_or_else(|| chrono::Utc.fix())
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The offset of a [`Zone`] at one instant; shows as its abbreviation.
#[derive(Clone, Debug)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
    abbreviation: Box<str>,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.abbreviation)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone.clone()
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        use chrono::{Datelike, Timelike};
        let civil = i16::try_from(local.year()).ok().and_then(|year| {
            jiff::civil::DateTime::new(
                year,
                local.month() as i8,
                local.day() as i8,
                local.hour() as i8,
                local.minute() as i8,
                local.second().min(59) as i8,
                local.nanosecond().min(999_999_999) as i32,
            )
            .ok()
        });
        let Some(civil) = civil else {
            // Beyond the database's years: the offset of the nearest end.
            return MappedLocalTime::Single(self.offset_at(local));
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                MappedLocalTime::Single(self.local_offset(local, offset))
            }
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            AmbiguousOffset::Fold { before, after } => MappedLocalTime::Ambiguous(
                self.local_offset(local, before),
                self.local_offset(local, after),
            ),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_at(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.offset_at(utc)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::{NaiveDate, Utc};

    fn local(zone: &Zone, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> MappedLocalTime<String> {
        let naive = NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap();
        zone.from_local_datetime(&naive)
            .map(|t| t.with_timezone(&Utc).format("%H:%M").to_string())
    }

    #[test]
    fn names_are_exact_and_links_work() {
        for name in [
            "Europe/Berlin",
            "America/New_York",
            "US/Eastern",
            "UTC",
            "Etc/GMT+5",
        ] {
            assert_eq!(Zone::get(name).unwrap().name(), name);
        }
        for bad in [
            "europe/berlin",
            "Mars/Olympus",
            "",
            "+01:00",
            "EST5EDT,M3.2.0,M11.1.0",
        ] {
            assert!(Zone::get(bad).is_none(), "{bad}");
        }
        assert!(Zone::names().len() > 400);
        assert!(Zone::names().iter().any(|n| n == "Asia/Kolkata"));
    }

    #[test]
    fn gaps_folds_and_abbreviations() {
        let ny = Zone::get("America/New_York").unwrap();
        // 2026-03-08 02:30 does not exist; 2026-11-01 01:30 happens twice.
        assert_eq!(local(&ny, 2026, 3, 8, 2, 30), MappedLocalTime::None);
        assert_eq!(
            local(&ny, 2026, 11, 1, 1, 30),
            MappedLocalTime::Ambiguous("05:30".into(), "06:30".into())
        );
        assert_eq!(
            local(&ny, 2026, 7, 1, 9, 0),
            MappedLocalTime::Single("13:00".into())
        );
        let at = NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(13, 0, 0)
            .unwrap()
            .and_utc();
        assert_eq!(
            at.with_timezone(&ny).format("%H:%M %Z").to_string(),
            "09:00 EDT"
        );
        let kolkata = Zone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            at.with_timezone(&kolkata).format("%H:%M %Z").to_string(),
            "18:30 IST"
        );
        assert_eq!(
            at.with_timezone(&Zone::utc()).format("%Z").to_string(),
            "UTC"
        );
    }
}
