//! `jam show` on arbitrary files: the pcap and pcapng readers, then every view of what they read.
//!
//! Checked for every input: reading returns frames or an error, never a panic; each TCP segment
//! of the frames read gets a row, a detail and an arrow, and the rows are numbered in order.
#![no_main]

use jam::packets::flow::{self, Arrow, Session};
use jam::packets::table::{self, Row};
use jam::packets::{pcap, segments};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frames) = pcap::read(data) else { return };
    let mut last = 0;
    let mut session = Session { client: "a".into(), server: "b".into(), arrows: Vec::new() };
    let _ = segments(&frames, 0, |s| {
        assert!(s.number > last && s.number <= frames.len());
        last = s.number;
        let row = Row::new(s.number, s.time_ns, s.frame, &s.packet, &s.followed);
        assert!(row.line().starts_with(&s.number.to_string()));
        let detail = table::detail(s.number, s.frame, &s.packet, &s.followed);
        assert!(detail.starts_with(&format!("Frame {}:", s.number)));
        session.arrows.push(Arrow::new(s.number, s.time_ns, &s.packet, &s.followed));
    });
    if !session.arrows.is_empty() {
        let _ = session.text(1);
        let picture = flow::svg(&[(1, &session)]);
        assert!(picture.ends_with("</svg>\n"));
    }
});
