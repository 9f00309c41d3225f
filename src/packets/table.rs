//! The sheet's view of a segment: Wireshark's columns (No., Time, Source, Destination, Protocol,
//! Length, Info), and the detail of one frame (`jam show --detail`), each as Wireshark words it.

use std::fmt::{self, Write as _};

use super::decode::{LinkHeader, Packet, TcpOption, flag, options};
use super::pcap::Frame;
use super::tcp::Followed;

/// One row of the packet list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The frame's number in the capture, from 1.
    pub number: usize,
    /// Nanoseconds since the capture's first frame.
    pub time_ns: i64,
    /// The source address.
    pub src: String,
    /// The destination address.
    pub dst: String,
    /// The length on the wire, link header included.
    pub length: u32,
    /// Wireshark's Info text.
    pub info: String,
    /// The TCP session it belongs to, from 0.
    pub session: usize,
}

/// A time in seconds as Wireshark's Time column shows it, to the microsecond: `0.000123`, and
/// `-0.001045` for a frame the capture holds before the first (frames taken on several CPUs can
/// arrive a little out of order).
pub struct Seconds(pub i64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.unsigned_abs();
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:06}", abs / 1_000_000_000, abs % 1_000_000_000 / 1000)
    }
}

/// The packet list's header line.
pub const HEADER: &str = "No.     Time        Source           Destination      Protocol Length Info";

impl Row {
    /// The row for frame `number` whose segment `p` its session saw as `f`.
    pub fn new(number: usize, time_ns: i64, frame: &Frame<'_>, p: &Packet<'_>, f: &Followed) -> Row {
        let mut info_text = String::with_capacity(128);
        info_into(&mut info_text, p, f);
        Row {
            number,
            time_ns,
            src: p.ip.src.to_string(),
            dst: p.ip.dst.to_string(),
            length: frame.wire_len,
            info: info_text,
            session: f.session,
        }
    }

    /// The row as a line of the packet list (with no newline).
    pub fn line(&self) -> String {
        let mut line = String::with_capacity(160);
        columns(&mut line, self.number, self.time_ns, &self.src, &self.dst, self.length);
        line.push_str(&self.info);
        line
    }
}

/// Appends frame `number`'s line of the packet list to `out`, newline included: the same text
/// as [`Row::line`], written in place. A large capture is printed this way: musl's allocator is
/// slow, and a row's strings made one by one cost four times the rest of `jam show`.
pub fn write_row(
    out: &mut String,
    number: usize,
    time_ns: i64,
    frame: &Frame<'_>,
    p: &Packet<'_>,
    f: &Followed,
) {
    let mut line = LineBuf::new();
    columns(&mut line, number, time_ns, &p.ip.src, &p.ip.dst, frame.wire_len);
    info_into(&mut line, p, f);
    let _ = line.write_str("\n");
    out.push_str(line.as_str());
}

/// The columns before Info, each padded to its width.
fn columns<W: Sink>(
    out: &mut W,
    number: usize,
    time_ns: i64,
    src: &dyn fmt::Display,
    dst: &dyn fmt::Display,
    length: u32,
) {
    let field = |out: &mut W, width: usize, value: fmt::Arguments<'_>| {
        let start = out.written();
        let _ = out.write_fmt(value);
        let written = out.written() - start;
        for _ in written..width {
            let _ = out.write_str(" ");
        }
        let _ = out.write_str(" ");
    };
    field(out, 7, format_args!("{number}"));
    field(out, 11, format_args!("{}", Seconds(time_ns)));
    field(out, 16, format_args!("{src}"));
    field(out, 16, format_args!("{dst}"));
    let _ = out.write_str("TCP      ");
    field(out, 6, format_args!("{length}"));
}

/// Where a row is written: a `String`, or a line on the stack ([`LineBuf`]).
pub trait Sink: fmt::Write {
    /// Bytes written so far.
    fn written(&self) -> usize;
}

impl Sink for String {
    fn written(&self) -> usize {
        self.len()
    }
}

/// One line of text built on the stack, its pieces copied in fixed-size moves.
///
/// A row is some forty short pieces (a port, `Seq=`, a number). Appended to a `String`, each is
/// a call to musl's `memcpy`, whose `rep movsq` start-up dwarfs a few bytes: perf put it at 58% of
/// `jam show`'s time. Here each piece is copied 8, 4, 2 and 1 bytes at a time, moves the compiler
/// makes inline, and the finished line goes out in one copy.
pub struct LineBuf {
    bytes: [u8; LINE_MAX],
    len: usize,
}

/// The longest line a row can make, with room to spare (IPv6 addresses, every option, SACK).
const LINE_MAX: usize = 1024;

impl LineBuf {
    /// An empty line.
    pub fn new() -> LineBuf {
        LineBuf { bytes: [0; LINE_MAX], len: 0 }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Default for LineBuf {
    fn default() -> LineBuf {
        LineBuf::new()
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut src = s.as_bytes();
        let Some(dst) = self.bytes.get_mut(self.len..self.len + src.len()) else { return Err(fmt::Error) };
        self.len += src.len();
        let mut dst = dst;
        macro_rules! chunk {
            ($n:literal) => {
                while src.len() >= $n {
                    let (d, rest) = dst.split_at_mut($n);
                    let d: &mut [u8; $n] = d.try_into().map_err(|_| fmt::Error)?;
                    *d = src[..$n].try_into().map_err(|_| fmt::Error)?;
                    (dst, src) = (rest, &src[$n..]);
                }
            };
        }
        chunk!(8);
        chunk!(4);
        chunk!(2);
        chunk!(1);
        Ok(())
    }
}

impl Sink for LineBuf {
    fn written(&self) -> usize {
        self.len
    }
}

/// The names of the flags set, as Wireshark lists them: `SYN, ACK`.
pub fn flag_names(flags: u16) -> std::borrow::Cow<'static, str> {
    // The combinations a session shows, without building a string.
    const COMMON: [(u16, &str); 8] = [
        (flag::SYN, "SYN"),
        (flag::SYN | flag::ACK, "SYN, ACK"),
        (flag::ACK, "ACK"),
        (flag::PSH | flag::ACK, "PSH, ACK"),
        (flag::FIN | flag::ACK, "FIN, ACK"),
        (flag::FIN | flag::PSH | flag::ACK, "FIN, PSH, ACK"),
        (flag::RST, "RST"),
        (flag::RST | flag::ACK, "RST, ACK"),
    ];
    if let Some((_, name)) = COMMON.iter().find(|(f, _)| *f == flags) {
        return (*name).into();
    }
    let mut s = String::new();
    push_flag_names(&mut s, flags);
    s.into()
}

fn push_flag_names(s: &mut String, flags: u16) {
    const NAMES: [(u16, &str); 9] = [
        (flag::FIN, "FIN"),
        (flag::SYN, "SYN"),
        (flag::RST, "RST"),
        (flag::PSH, "PSH"),
        (flag::ACK, "ACK"),
        (flag::URG, "URG"),
        (flag::ECE, "ECE"),
        (flag::CWR, "CWR"),
        (flag::AE, "AE"),
    ];
    let mut first = true;
    for (bit, name) in NAMES {
        if flags & bit != 0 {
            if !first {
                s.push_str(", ");
            }
            s.push_str(name);
            first = false;
        }
    }
    if first {
        s.push_str("<None>");
    }
}

/// Appends Wireshark's Info for a TCP segment to `s`: the analysis, the ports, the flags, the
/// relative numbers, the window, the length and the options.
pub fn info_into<W: Sink>(s: &mut W, p: &Packet<'_>, f: &Followed) {
    let t = &p.tcp;
    for a in &f.analysis {
        let _ = write!(s, "[{}] ", a.label());
    }
    let _ = write!(s, "{} → {} [", t.src_port, t.dst_port);
    let _ = s.write_str(&flag_names(t.flags));
    let _ = write!(s, "] Seq={}", f.seq);
    if t.flags & flag::ACK != 0 {
        let _ = write!(s, " Ack={}", f.ack);
    }
    let _ = write!(s, " Win={}", f.window);
    if t.flags & flag::URG != 0 {
        let _ = write!(s, " Urg={}", t.urgent);
    }
    let _ = write!(s, " Len={}", t.len);
    let mut sack = f.sack.iter();
    for o in options(t.options) {
        match o {
            TcpOption::Mss(v) => {
                let _ = write!(s, " MSS={v}");
            }
            TcpOption::WindowScale(shift) => {
                let _ = write!(s, " WS={}", 1u32 << shift.min(14));
            }
            TcpOption::SackPermitted => {
                let _ = s.write_str(" SACK_PERM");
            }
            TcpOption::Timestamp(val, ecr) => {
                let _ = write!(s, " TSval={val} TSecr={ecr}");
            }
            TcpOption::Sack(_, count) => {
                for (left, right) in sack.by_ref().take(count) {
                    let _ = write!(s, " SLE={left} SRE={right}");
                }
            }
            _ => {}
        }
    }
}

/// What a segment does, in a plain sentence: the line that keeps a student from taking the SYN
/// for the segment that carries the time.
pub fn meaning(p: &Packet<'_>, f: &Followed) -> String {
    let t = &p.tcp;
    let who = if f.from_client { "the client" } else { "the server" };
    let has = |bit| t.flags & bit != 0;
    let carries = if t.len == 0 {
        "It carries no data: its bytes are all headers.".to_string()
    } else {
        format!(
            "It carries {} byte{} of data: \"{}\".",
            t.len,
            if t.len == 1 { "" } else { "s" },
            shown(t.payload)
        )
    };
    let does = if has(flag::RST) {
        format!("{who} resets the connection: it is torn down at once, and data still in flight is lost.")
    } else if has(flag::SYN) && has(flag::ACK) {
        "The server agrees to the connection (handshake 2 of 3) and acknowledges the client's SYN."
            .to_string()
    } else if has(flag::SYN) {
        "The client asks to connect (handshake 1 of 3): it sends its initial sequence number and options."
            .to_string()
    } else if has(flag::FIN) {
        format!("{who} closes its side: it will send no more data (FIN).")
    } else if t.len > 0 && f.from_client {
        "The client sends its request.".to_string()
    } else if t.len > 0 {
        "The server sends its reply.".to_string()
    } else if f.seq == 1 && f.ack == 1 {
        "The client acknowledges the server's SYN: the connection is open (handshake 3 of 3).".to_string()
    } else {
        format!("{who} acknowledges the bytes it has received, up to relative sequence number {}.", f.ack)
    };
    format!("{does} {carries}")
}

/// Up to 40 bytes with CR, LF and other controls made visible, as `jam talk --show-bytes` does.
pub fn shown(payload: &[u8]) -> String {
    let mut out = String::new();
    for &b in payload.iter().take(40) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            32..=126 => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if payload.len() > 40 {
        out.push_str("...");
    }
    out
}

/// `jam show --detail N`: the frame's layers as Wireshark's detail names them, where its bytes
/// go, and what the segment does.
pub fn detail(number: usize, frame: &Frame<'_>, p: &Packet<'_>, f: &Followed) -> String {
    let t = &p.tcp;
    let wire = frame.wire_len as usize;
    let captured = frame.data.len();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Frame {number}: {wire} bytes on wire ({} bits), {captured} bytes captured ({} bits)",
        wire * 8,
        captured * 8
    );
    let link_len = p.link.len();
    let link_name = match p.link {
        LinkHeader::Ethernet { src, dst, .. } => {
            format!("Ethernet II, Src: {}, Dst: {}", mac(&src), mac(&dst))
        }
        LinkHeader::Cooked { version: 1, .. } => "Linux cooked capture v1".to_string(),
        LinkHeader::Cooked { .. } => "Linux cooked capture v2".to_string(),
        LinkHeader::Raw => "Raw packet data".to_string(),
        LinkHeader::Loopback { family } => format!("Null/Loopback, Family: {family}"),
    };
    let _ = writeln!(s, "{link_name}");
    let _ = writeln!(s, "Internet Protocol Version {}, Src: {}, Dst: {}", p.ip.version, p.ip.src, p.ip.dst);
    let ack = if t.flags & flag::ACK != 0 { format!(", Ack: {}", f.ack) } else { String::new() };
    let _ = writeln!(
        s,
        "Transmission Control Protocol, Src Port: {}, Dst Port: {}, Seq: {}{ack}, Len: {}",
        t.src_port, t.dst_port, f.seq, t.len
    );
    if t.len > 0 {
        let _ = writeln!(s, "Data ({} bytes)", t.len);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Where its {wire} bytes go:");
    let link_what = match p.link {
        LinkHeader::Ethernet { .. } => "Ethernet header: destination and source MAC addresses, EtherType",
        LinkHeader::Cooked { version: 1, .. } => {
            "Linux cooked header (a capture on \"any\"): packet type, address type and length, address, protocol"
        }
        LinkHeader::Cooked { .. } => {
            "Linux cooked v2 header (a capture on \"any\"): protocol, interface, address"
        }
        LinkHeader::Raw => "no link header (raw IP)",
        LinkHeader::Loopback { .. } => "loopback header: the address family",
    };
    let ip_options = p.ip.header_len - if p.ip.version == 4 { 20 } else { 40 };
    let ip_what = if ip_options > 0 {
        format!("IPv{} header, {ip_options} of them options or extension headers", p.ip.version)
    } else {
        format!("IPv{} header: addresses, length, TTL, protocol", p.ip.version)
    };
    let tcp_what = format!(
        "TCP header: ports, sequence and acknowledgement numbers, flags, window; {} of them options{}",
        t.header_len - 20,
        option_names(t.options)
    );
    let payload_what =
        if t.len == 0 { "payload: none".to_string() } else { format!("payload: \"{}\"", shown(t.payload)) };
    let rows = [
        (link_len, link_what.to_string()),
        (p.ip.header_len, ip_what),
        (t.header_len, tcp_what),
        (t.len, payload_what),
    ];
    let mut total = 0;
    for (n, what) in rows {
        if n == 0 && what.starts_with("no link") {
            continue;
        }
        total += n;
        let _ = writeln!(s, "  {n:>5} bytes  {what}");
    }
    let trailer = wire.saturating_sub(total);
    if trailer > 0 {
        let _ = writeln!(s, "  {trailer:>5} bytes  Ethernet padding (a frame is at least 60 bytes)");
    }
    let _ = writeln!(s, "  {wire:>5} bytes  in all");
    let _ = writeln!(s);
    let _ = writeln!(s, "{}", meaning(p, f));
    if let LinkHeader::Cooked { version, .. } = p.link {
        let _ = writeln!(
            s,
            "(Captured on \"any\": the {}-byte Linux cooked header stands where Ethernet's 14 bytes would, so \
             every frame is {} bytes longer than on one interface: a SYN with options is 76 bytes here, 74 on eth0.)",
            p.link.len(),
            p.link.len() - 14
        );
        let _ = version;
    }
    s
}

/// ` (MSS, SACK_PERM, ...)`: the options a header carries, by name.
fn option_names(bytes: &[u8]) -> String {
    let names: Vec<&str> = options(bytes)
        .filter_map(|o| match o {
            TcpOption::Mss(_) => Some("MSS"),
            TcpOption::WindowScale(_) => Some("window scale"),
            TcpOption::SackPermitted => Some("SACK permitted"),
            TcpOption::Sack(..) => Some("SACK"),
            TcpOption::Timestamp(..) => Some("timestamps"),
            _ => None,
        })
        .collect();
    if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) }
}

fn mac(b: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_first_frame_are_shown_as_wireshark_shows_them() {
        assert_eq!(Seconds(0).to_string(), "0.000000");
        assert_eq!(Seconds(1_500_123_999).to_string(), "1.500123");
        assert_eq!(Seconds(-1_045_000).to_string(), "-0.001045");
        assert_eq!(Seconds(-2_000_001_000).to_string(), "-2.000001");
    }
}
