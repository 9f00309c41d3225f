//! The server's clock: which time zone is in force, and the time of day in it, cheaply.
//!
//! The zone comes from `--tz`, else the `TZ` environment variable, else the system's local zone,
//! else UTC. A name the compiled-in IANA database does not hold, and that is not a POSIX TZ rule
//! either, is an error rather than a silent fall back to UTC: a lab whose replies are seven hours
//! off is worse than one that does not start.
//!
//! Converting an instant to a time of day in a zone means a search through the zone's
//! transitions; the server answers many requests a second, so [`Clock`] does that once per
//! second and shares the result between threads in one atomic word.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::Error;
use crate::server::protocol::WallTime;
use crate::server::tzdb;

/// A time zone together with the name it is reported by.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The rules.
    pub tz: TimeZone,
    /// The name the log and the lab report it by.
    pub name: String,
}

impl Zone {
    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone { tz: TimeZone::UTC, name: "UTC".into() }
    }

    /// An IANA name (`Asia/Jakarta`) or a POSIX TZ rule (`WIB-7`), with glibc's optional leading
    /// colon (`:Asia/Jakarta`).
    pub fn named(spec: &str) -> Result<Zone, Error> {
        let spec = spec.strip_prefix(':').unwrap_or(spec);
        if let Some((name, tz)) = tzdb::get(spec) {
            return Ok(Zone { name: name.to_string(), tz });
        }
        // A POSIX rule names its standard time with at least three letters and gives an offset;
        // the parser accepts "UTC0" or "WIB-7" but not a misspelt "Asia/Jakata".
        TimeZone::posix(spec).map(|tz| Zone { tz, name: spec.to_string() }).map_err(|_| {
            Error::new(format!(
                "unknown time zone {spec:?}: give an IANA name such as Asia/Jakarta or a POSIX \
                 rule such as WIB-7"
            ))
        })
    }

    /// The zone in force: `flag` (from `--tz`) if given, else `env_tz` (the `TZ` variable) if
    /// set and not empty, else the system's zone, else UTC.
    pub fn resolve(flag: Option<&str>, env_tz: Option<&str>) -> Result<Zone, Error> {
        if let Some(spec) = flag.or(env_tz.filter(|s| !s.is_empty())) {
            return Zone::named(spec);
        }
        // /etc/localtime is usually a link into the system's zoneinfo: the name it points at
        // is looked up in jam's database, so the zone is named in the log.
        if let Some(zone) = localtime_link().and_then(|name| Zone::named(&name).ok()) {
            return Ok(zone);
        }
        match TimeZone::try_system() {
            Ok(tz) => Ok(Zone { name: tz.iana_name().unwrap_or("system local time").to_string(), tz }),
            Err(_) => Ok(Zone::utc()),
        }
    }
}

/// The zone name that `/etc/localtime` links to (`Asia/Jakarta` for
/// `/usr/share/zoneinfo/Asia/Jakarta`), if it is such a link.
fn localtime_link() -> Option<String> {
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let target = target.to_str()?;
    let (_, name) = target.split_once("zoneinfo/")?;
    Some(name.to_string())
}

/// Bits of the cache word that hold the second of the day (0..86400 needs 17).
const DAY_BITS: u32 = 17;
/// Marks the cache as empty: no second since the epoch has all bits set.
const EMPTY: u64 = u64::MAX;

/// The time of day in one zone, looked up at most once per second.
#[derive(Debug)]
pub struct Clock {
    zone: Zone,
    /// `unix_second << DAY_BITS | second_of_day` for the last second looked up.
    cache: AtomicU64,
}

impl Clock {
    /// A clock that tells the time in `zone`.
    pub fn new(zone: Zone) -> Clock {
        Clock { zone, cache: AtomicU64::new(EMPTY) }
    }

    /// The zone the clock tells the time in.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The time of day now.
    pub fn now(&self) -> WallTime {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.at(secs)
    }

    /// The time of day at `unix_seconds` (seconds since 1970 UTC).
    pub fn at(&self, unix_seconds: u64) -> WallTime {
        let cached = self.cache.load(Ordering::Relaxed);
        if cached != EMPTY && cached >> DAY_BITS == unix_seconds {
            return WallTime::from_seconds_of_day((cached & ((1 << DAY_BITS) - 1)) as u32);
        }
        let offset = Timestamp::from_second(unix_seconds as i64)
            .map(|ts| self.zone.tz.to_offset(ts).seconds())
            .unwrap_or(0);
        let of_day = (unix_seconds as i64 + i64::from(offset)).rem_euclid(86_400) as u64;
        // Two threads may race to fill the cache for the same second; both write the same word.
        self.cache.store(unix_seconds << DAY_BITS | of_day, Ordering::Relaxed);
        WallTime::from_seconds_of_day(of_day as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-05-09 09:37:26 UTC, the day of the lab sheet's capture.
    const LAB_DAY: u64 = 1_746_783_446;

    fn hms(t: WallTime) -> (u8, u8, u8) {
        (t.hour, t.minute, t.second)
    }

    #[test]
    fn jakarta_is_seven_hours_ahead_of_utc() {
        let jkt = Clock::new(Zone::named("Asia/Jakarta").unwrap());
        assert_eq!(hms(jkt.at(LAB_DAY)), (16, 37, 26));
        let utc = Clock::new(Zone::utc());
        assert_eq!(hms(utc.at(LAB_DAY)), (9, 37, 26));
    }

    #[test]
    fn posix_rules_and_leading_colon_are_accepted() {
        let wib = Zone::named("WIB-7").unwrap();
        assert_eq!(wib.name, "WIB-7");
        assert_eq!(hms(Clock::new(wib).at(LAB_DAY)), (16, 37, 26));
        assert_eq!(Zone::named(":Asia/Jakarta").unwrap().name, "Asia/Jakarta");
    }

    #[test]
    fn daylight_saving_is_followed() {
        // New York: EDT (UTC-4) in May, EST (UTC-5) in January.
        let ny = Clock::new(Zone::named("America/New_York").unwrap());
        assert_eq!(hms(ny.at(LAB_DAY)), (5, 37, 26));
        assert_eq!(hms(ny.at(1_736_415_446)).0, 4); // 2025-01-09 09:37:26 UTC
    }

    #[test]
    fn unknown_zones_are_errors_that_name_the_zone() {
        let err = Zone::named("Asia/Jakata").unwrap_err().to_string();
        assert!(err.contains("\"Asia/Jakata\""), "{err}");
    }

    #[test]
    fn flag_beats_env_and_empty_env_is_unset() {
        assert_eq!(Zone::resolve(Some("UTC"), Some("Asia/Jakarta")).unwrap().name, "UTC");
        assert_eq!(Zone::resolve(None, Some("Asia/Jakarta")).unwrap().name, "Asia/Jakarta");
        // An empty TZ is the same as none: the system's zone, else UTC.
        assert_eq!(Zone::resolve(None, Some("")).unwrap().name, Zone::resolve(None, None).unwrap().name);
        assert!(Zone::resolve(None, Some("Nowhere/Special")).is_err());
    }

    #[test]
    fn cache_serves_the_same_second_and_moves_on() {
        let c = Clock::new(Zone::utc());
        assert_eq!(hms(c.at(LAB_DAY)), (9, 37, 26));
        assert_eq!(hms(c.at(LAB_DAY)), (9, 37, 26));
        assert_eq!(hms(c.at(LAB_DAY + 1)), (9, 37, 27));
        assert_eq!(hms(c.at(LAB_DAY - 86_400)), (9, 37, 26));
    }
}
