//! TCP sessions followed segment by segment, as Wireshark follows them, so that what `jam show`
//! says of a segment is what the course's Wireshark said: its session, its sequence and
//! acknowledgement numbers relative to the session's start, its window with the scale the
//! handshake agreed, and the analysis that flags what is unusual (a retransmission, a duplicate
//! ACK, a window update, a segment the capture missed).
//!
//! Relative numbers: a direction's base is its SYN's sequence number, so the SYN is `Seq=0` and
//! the first byte of data `Seq=1`. A capture that starts mid-session takes the base from the
//! first segment seen (which is then `Seq=1`, as if the SYN had been seen), or from the first
//! acknowledgement of the other direction.

use std::collections::HashMap;
use std::net::IpAddr;

use super::decode::{Packet, TcpOption, flag, options};

/// What Wireshark's analysis says of a segment, in the order it prints them before the Info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Analysis {
    /// A SYN on a finished session's addresses and ports, with a new initial sequence number.
    PortsReused,
    /// The segment starts past the bytes seen so far: the capture missed some.
    PreviousNotCaptured,
    /// A segment at or before the end of the bytes already seen, carrying data again.
    Retransmission,
    /// An empty segment one byte back, to see whether the peer is still there.
    KeepAlive,
    /// The ACK to a keep-alive.
    KeepAliveAck,
    /// An ACK that only announces a new window.
    WindowUpdate,
    /// The receiver's window is zero.
    ZeroWindow,
    /// The same acknowledgement again, with nothing new: the `n`th repeat of frame `of`.
    DupAck {
        /// The frame whose acknowledgement is repeated.
        of: usize,
        /// How many times it has been repeated.
        n: u32,
    },
    /// An acknowledgement of bytes the capture never saw.
    AckedUnseen,
}

impl Analysis {
    /// Where it stands before the Info, left to right. Wireshark checks the flags in one order
    /// (retransmission, lost segment, unseen data acknowledged, keep-alive, window update,
    /// keep-alive ACK, duplicate ACK, zero window) and puts each label in front of the Info as
    /// it goes, so they read in the reverse order.
    fn rank(&self) -> u8 {
        match self {
            Analysis::PortsReused => 0,
            Analysis::ZeroWindow => 1,
            Analysis::DupAck { .. } => 2,
            Analysis::KeepAliveAck => 3,
            Analysis::WindowUpdate => 4,
            Analysis::KeepAlive => 5,
            Analysis::AckedUnseen => 6,
            Analysis::PreviousNotCaptured => 7,
            Analysis::Retransmission => 8,
        }
    }

    /// The bracketed text Wireshark puts before the Info.
    pub fn label(&self) -> String {
        match self {
            Analysis::PortsReused => "TCP Port numbers reused".into(),
            Analysis::PreviousNotCaptured => "TCP Previous segment not captured".into(),
            Analysis::Retransmission => "TCP Retransmission".into(),
            Analysis::KeepAlive => "TCP Keep-Alive".into(),
            Analysis::KeepAliveAck => "TCP Keep-Alive ACK".into(),
            Analysis::WindowUpdate => "TCP Window Update".into(),
            Analysis::ZeroWindow => "TCP ZeroWindow".into(),
            Analysis::DupAck { of, n } => format!("TCP Dup ACK {of}#{n}"),
            Analysis::AckedUnseen => "TCP ACKed unseen segment".into(),
        }
    }
}

/// A segment as its session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    /// The session's index, 0 for the first session of the capture (Wireshark's `tcp.stream`).
    pub session: usize,
    /// Whether it goes from the session's client (the side that sent the first SYN, or was
    /// seen first) to its server.
    pub from_client: bool,
    /// The sequence number relative to its direction's start.
    pub seq: u32,
    /// The acknowledgement number relative to the other direction's start.
    pub ack: u32,
    /// The window in bytes: the field times the scale the handshake agreed, if it was seen.
    pub window: u32,
    /// What is unusual about it.
    pub analysis: Vec<Analysis>,
    /// Its SACK blocks' edges, relative to the other direction's start.
    pub sack: Vec<(u32, u32)>,
}

/// One direction of a session.
#[derive(Default, Clone, Debug)]
struct Direction {
    /// The sequence number that is relative 0; `None` until it is known.
    base: Option<u32>,
    /// The window scale from this side's SYN: `None` if its SYN was not seen.
    scale_option: Option<Option<u8>>,
    /// The next sequence number after everything sent so far.
    next_seq: Option<u32>,
    /// The end of what the other side has to acknowledge: moved by data, SYN and FIN only, not
    /// by a bare ACK that jumps ahead (Wireshark's `maxseqtobeacked`).
    max_to_ack: Option<u32>,
    /// The last acknowledgement sent, and the window sent with it.
    last_ack: Option<u32>,
    last_window: Option<u32>,
    /// The frame of the last acknowledgement that was not a duplicate, and duplicates since.
    last_new_ack_frame: usize,
    dup_acks: u32,
    /// Whether the last segment was a keep-alive.
    keep_alive: bool,
}

/// One session: the client's direction, then the server's.
#[derive(Clone, Debug, Default)]
struct Session {
    dirs: [Direction; 2],
}

type Endpoint = (IpAddr, u16);

/// Every session of a capture so far.
#[derive(Default)]
pub struct Tracker {
    /// Each pair of ends (the lower first) to its latest session.
    by_ends: HashMap<(Endpoint, Endpoint), usize>,
    sessions: Vec<Session>,
    /// The client end of each session.
    clients: Vec<Endpoint>,
}

impl Tracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Sessions seen so far.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Follows the segment of frame `frame` (numbered from 1).
    pub fn follow(&mut self, frame: usize, p: &Packet<'_>) -> Followed {
        let t = &p.tcp;
        let src = (p.ip.src, t.src_port);
        let dst = (p.ip.dst, t.dst_port);
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let syn_only = t.flags & (flag::SYN | flag::ACK) == flag::SYN;
        let mut analysis = Vec::new();
        let existing = self.by_ends.get(&key).copied();
        let session = match existing {
            Some(s) => {
                let client_side = self.clients[s] == src;
                let fwd = &self.sessions[s].dirs[if client_side { 0 } else { 1 }];
                // A SYN with a new initial sequence number where a session was: the ports reused.
                if syn_only && fwd.base.is_some_and(|b| b != t.seq) {
                    analysis.push(Analysis::PortsReused);
                    self.start(key, src)
                } else {
                    s
                }
            }
            None => self.start(
                key,
                if t.flags & (flag::SYN | flag::ACK) == flag::SYN | flag::ACK { dst } else { src },
            ),
        };
        let from_client = self.clients[session] == src;
        let [a, b] = &mut self.sessions[session].dirs;
        let (fwd, rev) = if from_client { (a, b) } else { (b, a) };

        let syn = t.flags & flag::SYN != 0;
        let fin = t.flags & flag::FIN != 0;
        let rst = t.flags & flag::RST != 0;
        let has_ack = t.flags & flag::ACK != 0;

        // The bases: this side's from its SYN or first segment, the other's from an ACK.
        if fwd.base.is_none() {
            fwd.base = Some(if syn { t.seq } else { t.seq.wrapping_sub(1) });
        }
        if has_ack && rev.base.is_none() {
            rev.base = Some(t.ack.wrapping_sub(1));
        }
        if syn {
            let scale = options(t.options).find_map(|o| match o {
                TcpOption::WindowScale(s) => Some(s.min(14)),
                _ => None,
            });
            fwd.scale_option = Some(scale);
        }
        // The window: a SYN's is never scaled; after it, the scale both SYNs agreed.
        // Unknown if this side's SYN was not seen; none if either SYN was seen without the option.
        let window = match (syn, fwd.scale_option, rev.scale_option) {
            (false, Some(Some(mine)), Some(Some(_)) | None) => (t.window as u32) << mine,
            _ => t.window as u32,
        };

        let seglen = t.len as u32;
        let control = t.flags & (flag::SYN | flag::FIN | flag::RST) != 0;
        let seq = t.seq;
        let mut keep_alive = false;
        if let Some(next) = fwd.next_seq {
            if seq_gt(seq, next) && !rst {
                analysis.push(Analysis::PreviousNotCaptured);
            }
            if seglen <= 1 && !control && seq == next.wrapping_sub(1) {
                analysis.push(Analysis::KeepAlive);
                keep_alive = true;
            }
        }
        let mut dup = false;
        if seglen == 0 && !control && fwd.next_seq == Some(seq) && has_ack && fwd.last_ack == Some(t.ack) {
            if fwd.last_window.is_some_and(|w| w != window) {
                analysis.push(Analysis::WindowUpdate);
            } else if rev.keep_alive {
                analysis.push(Analysis::KeepAliveAck);
            } else {
                fwd.dup_acks += 1;
                dup = true;
                analysis.push(Analysis::DupAck { of: fwd.last_new_ack_frame, n: fwd.dup_acks });
            }
        }
        if window == 0 && !control {
            analysis.push(Analysis::ZeroWindow);
        }
        if has_ack && !rst {
            if let Some(rev_max) = rev.max_to_ack {
                if seq_gt(t.ack, rev_max) {
                    analysis.push(Analysis::AckedUnseen);
                    // Said once: what the other side sent is now taken as acknowledged.
                    rev.max_to_ack = rev.next_seq;
                }
            }
        }
        if !keep_alive && (seglen > 0 || syn || fin) {
            if let Some(next) = fwd.next_seq {
                if seq_lt(seq, next) {
                    analysis.push(Analysis::Retransmission);
                }
            }
        }

        // What this segment moves forward.
        let end = seq.wrapping_add(seglen).wrapping_add(syn as u32 + fin as u32);
        if fwd.next_seq.is_none_or(|n| seq_gt(end, n)) {
            fwd.next_seq = Some(end);
        }
        // Data after a gap does not count: its acknowledgement shows the gap.
        let after_gap = analysis.contains(&Analysis::PreviousNotCaptured);
        if (seglen > 0 || syn || fin) && !after_gap && fwd.max_to_ack.is_none_or(|m| seq_gt(end, m)) {
            fwd.max_to_ack = Some(end);
        }
        if has_ack && !dup && (fwd.last_ack != Some(t.ack) || fwd.last_window != Some(window)) {
            fwd.last_new_ack_frame = frame;
            fwd.dup_acks = 0;
        }
        if has_ack {
            fwd.last_ack = Some(t.ack);
        }
        fwd.last_window = Some(window);
        fwd.keep_alive = keep_alive;

        analysis.sort_by_key(Analysis::rank);
        let rev_base = rev.base.unwrap_or(0);
        let sack = options(t.options)
            .flat_map(|o| match o {
                TcpOption::Sack(blocks, n) => blocks[..n].to_vec(),
                _ => Vec::new(),
            })
            .map(|(l, r)| (l.wrapping_sub(rev_base), r.wrapping_sub(rev_base)))
            .collect();
        Followed {
            session,
            sack,
            from_client,
            seq: seq.wrapping_sub(fwd.base.unwrap_or(seq)),
            ack: if has_ack { t.ack.wrapping_sub(rev.base.unwrap_or(t.ack)) } else { 0 },
            window,
            analysis,
        }
    }

    /// Starts a session whose client is `client`.
    fn start(&mut self, key: (Endpoint, Endpoint), client: Endpoint) -> usize {
        let index = self.sessions.len();
        self.sessions.push(Session::default());
        self.clients.push(client);
        self.by_ends.insert(key, index);
        index
    }
}

/// Whether `a` comes after `b` in sequence space (modulo 2^32).
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
