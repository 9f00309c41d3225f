//! Captures of the lab's exchange, read and shown as the course's Wireshark shows them.
//!
//! A pure core, like the server's protocol: bytes in, values and text out, no sockets and no
//! clock, so that every rule is a unit test and tshark can be the oracle of the whole.
//! - [`pcap`]: capture files read (pcap and pcapng) and written (pcap).
//! - [`decode`]: a frame's link, IP and TCP headers.
//! - [`filter`]: the kernel-side filter of a capture (classic BPF).
//! - [`tcp`]: each TCP session followed as Wireshark follows it: relative sequence numbers, the
//!   window's scale, and the analysis flags (retransmission, duplicate ACK, ...).
//! - [`table`]: the sheet's columns, Wireshark's Info text, and a frame's detail.
//! - [`flow`]: a session as a sequence diagram, in text and SVG.

pub mod decode;
pub mod filter;
pub mod flow;
pub mod pcap;
pub mod table;
pub mod tcp;

use std::fmt;

use decode::{Packet, Truncated};
use pcap::Frame;
use tcp::{Followed, Tracker};

/// One TCP segment of a capture, as its session saw it.
pub struct Segment<'f, 'a> {
    /// The frame's number in the capture, from 1.
    pub number: usize,
    /// Nanoseconds since the capture's first frame.
    pub time_ns: i64,
    /// The frame.
    pub frame: &'f Frame<'a>,
    /// Its headers.
    pub packet: Packet<'a>,
    /// What its session makes of it.
    pub followed: Followed,
}

/// A frame whose headers were not all captured.
#[derive(Debug, PartialEq, Eq)]
pub struct Cut {
    /// Its number, from 1.
    pub number: usize,
    /// What was cut.
    pub why: Truncated,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {}: {}", self.number, self.why)
    }
}

/// Calls `each` with every TCP segment to or from `port` (any port if 0), in the capture's
/// order, each followed in its session. Frames that are not TCP over IP are passed over.
pub fn segments<'a>(
    frames: &[Frame<'a>],
    port: u16,
    mut each: impl FnMut(Segment<'_, 'a>),
) -> Result<(), Cut> {
    let start = frames.first().map_or(0, |f| f.time_ns);
    let mut tracker = Tracker::new();
    for (i, frame) in frames.iter().enumerate() {
        let number = i + 1;
        let packet = match decode::decode(frame.link, frame.data) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(why) => return Err(Cut { number, why }),
        };
        if port != 0 && packet.tcp.src_port != port && packet.tcp.dst_port != port {
            continue;
        }
        let followed = tracker.follow(number, &packet);
        each(Segment { number, time_ns: frame.time_ns - start, frame, packet, followed });
    }
    Ok(())
}

/// Each session's segments as a sequence diagram's arrows, numbered from 1 in the order the
/// capture first shows them; only those with a segment that `wanted` keeps are returned.
pub fn sessions<'a>(
    frames: &[Frame<'a>],
    port: u16,
    wanted: impl Fn(&Segment<'_, 'a>) -> bool,
) -> Result<Vec<(usize, flow::Session)>, Cut> {
    let mut sessions: Vec<flow::Session> = Vec::new();
    segments(frames, port, |s| {
        if !wanted(&s) {
            return;
        }
        let index = s.followed.session;
        if sessions.len() <= index {
            sessions.resize(
                index + 1,
                flow::Session { client: String::new(), server: String::new(), arrows: Vec::new() },
            );
        }
        let session = &mut sessions[index];
        if session.arrows.is_empty() {
            let (src, dst) = (
                endpoint(s.packet.ip.src, s.packet.tcp.src_port),
                endpoint(s.packet.ip.dst, s.packet.tcp.dst_port),
            );
            (session.client, session.server) = if s.followed.from_client { (src, dst) } else { (dst, src) };
        }
        session.arrows.push(flow::Arrow::new(s.number, s.time_ns, &s.packet, &s.followed));
    })?;
    Ok(sessions
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.arrows.is_empty())
        .map(|(i, s)| (i + 1, s))
        .collect())
}

/// Frame `number`'s detail (`jam show --detail`), if it is a TCP segment to or from `port`.
pub fn detail(frames: &[Frame<'_>], port: u16, number: usize) -> Result<Option<String>, Cut> {
    let mut found = None;
    segments(frames, port, |s| {
        if s.number == number {
            found = Some(table::detail(s.number, s.frame, &s.packet, &s.followed));
        }
    })?;
    Ok(found)
}

/// An address and port as Wireshark writes them: `[v6]:port` for IPv6.
pub fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}
