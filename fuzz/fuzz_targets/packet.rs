//! The packet decoder and the session tracker on arbitrary frames of every link type.
//!
//! The first byte picks the link type; the rest is a run of frames, each a length byte and that
//! many bytes, all fed to one tracker. Checked for every input: decoding returns a packet,
//! nothing, or a truncation, never a panic; a packet's lengths fit its frame; its options end.
#![no_main]

use jam::packets::decode::{decode, options};
use jam::packets::pcap::{Frame, Link};
use jam::packets::table::{self, Row};
use jam::packets::tcp::Tracker;
use libfuzzer_sys::fuzz_target;

const LINKS: [Link; 6] = [Link::Ethernet, Link::LinuxSll, Link::LinuxSll2, Link::Raw, Link::Null, Link::Loop];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let link = LINKS[pick as usize % LINKS.len()];
    let mut tracker = Tracker::new();
    let mut number = 0;
    while let Some((&len, after)) = rest.split_first() {
        let (bytes, next) = after.split_at(after.len().min(len as usize * 2));
        rest = next;
        number += 1;
        let Ok(Some(p)) = decode(link, bytes) else { continue };
        assert!(p.link.len() + p.ip.header_len + p.tcp.header_len <= bytes.len());
        assert!(p.tcp.payload.len() <= p.tcp.len);
        assert!(options(p.tcp.options).count() <= p.tcp.options.len());
        let followed = tracker.follow(number, &p);
        let frame = Frame { time_ns: number as i64, wire_len: bytes.len() as u32, link, data: bytes };
        let _ = Row::new(number, 0, &frame, &p, &followed).line();
        let _ = table::detail(number, &frame, &p, &followed);
    }
});
