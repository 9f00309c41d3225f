//! The pages' request handling: httparse's head parse, jam's checks on it, and the browser view's
//! routes, on arbitrary bytes.
//!
//! Checked for every input: parsing says partial, done or bad, never panics; a head past the
//! limit is never partial; a request that is done has a path from `/` and is GET or HEAD; and the
//! browser view answers it (over a capture of one session) with a status, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use jam::http::{Head, MAX_HEAD, Reply, parse_head};
use jam::packets::decode::decode;
use jam::packets::pcap::{Frame, Link};
use jam::packets::table::Row;
use jam::packets::tcp::Tracker;
use jam::tools::capture::web::Live;
use libfuzzer_sys::fuzz_target;

/// A view holding a SYN and a data segment over raw IPv4.
fn view() -> &'static Arc<Live> {
    static VIEW: OnceLock<Arc<Live>> = OnceLock::new();
    VIEW.get_or_init(|| {
        let live = Arc::new(Live::new("mesin1", "any", 45000, Link::Raw, 65535));
        let syn: &[u8] = &[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 172, 16, 16, 102, 172, 16, 16, 101, //
            0x9c, 0x40, 0xaf, 0xc8, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ];
        let mut tracker = Tracker::new();
        for (i, data) in [syn].iter().enumerate() {
            let packet = decode(Link::Raw, data).unwrap().unwrap();
            let followed = tracker.follow(i + 1, &packet);
            let frame = Frame { time_ns: i as i64, wire_len: data.len() as u32, link: Link::Raw, data };
            live.push(&frame, &Row::new(i + 1, i as i64, &frame, &packet, &followed), &packet, &followed);
        }
        live
    })
}

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Head::Partial => assert!(data.len() < MAX_HEAD),
        Head::Bad(..) => {}
        Head::Done(request) => {
            assert!(request.path.starts_with('/'));
            assert!(request.method == "GET" || request.method == "HEAD");
            match view().handle(&request) {
                Reply::Body { body, .. } => assert!(body.len() < 1 << 20),
                Reply::Events(_) => assert_eq!(request.path, "/events"),
            }
        }
    }
});
