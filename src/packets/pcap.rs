//! Capture files: pcap and pcapng read into frames, and pcap written.
//!
//! Reading is pcap-parser's (rusticata): classic pcap in either byte order, with micro- or
//! nanosecond time stamps, and pcapng, what Wireshark saves by default, with its sections,
//! interfaces and their time-stamp resolutions. What it cannot read is an [`Error`] naming the
//! byte where reading stopped, never a panic. Writing is classic pcap with microsecond time
//! stamps, which every tool opens; each record is handed to the writer whole, so that a file
//! being written is a valid capture at every moment.

use std::fmt;
use std::io::{self, Write};

use pcap_parser::PcapError;
use pcap_parser::nom;
use pcap_parser::pcapng::Block;

/// How a frame's bytes begin: the link-layer header the capture recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II: 14 bytes of MAC addresses and EtherType.
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any`): 16 bytes.
    LinuxSll,
    /// Linux cooked capture v2 (`tcpdump -i any -y LINUX_SLL2`): 20 bytes.
    LinuxSll2,
    /// No link header: the IP header first.
    Raw,
    /// BSD loopback (macOS's `lo0`): a 4-byte address family in the capturing host's order.
    Null,
    /// OpenBSD loopback: a 4-byte address family in network order.
    Loop,
}

impl Link {
    /// The link type number a pcap file records.
    pub fn number(self) -> u32 {
        match self {
            Link::Ethernet => 1,
            Link::LinuxSll => 113,
            Link::LinuxSll2 => 276,
            Link::Raw => 101,
            Link::Null => 0,
            Link::Loop => 108,
        }
    }

    /// The link type a file's number names, if jam reads it.
    pub fn from_number(n: u32) -> Option<Link> {
        Some(match n {
            1 => Link::Ethernet,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            // LINKTYPE_RAW, and DLT_RAW as some systems number it.
            101 | 12 | 14 => Link::Raw,
            0 => Link::Null,
            108 => Link::Loop,
            _ => return None,
        })
    }
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// When it was captured: nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Its length on the wire; `data` may be shorter (the capture's snapshot length).
    pub wire_len: u32,
    /// How its bytes begin.
    pub link: Link,
    /// The bytes captured.
    pub data: &'a [u8],
}

/// Why a capture could not be read. `frame` is the frame that could not be read, from 1;
/// `offset` the byte of the file where it starts.
#[derive(Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Error {
    /// Neither pcap's nor pcapng's magic number at the start.
    NotACapture,
    /// The file ends inside a record or block.
    Truncated { frame: usize, offset: usize },
    /// A record or block that cannot be what it says.
    Corrupt { frame: usize, offset: usize },
    /// A link type jam does not decode.
    UnknownLink(u32),
    /// A pcapng packet names an interface that no block described.
    NoInterface { frame: usize, interface: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotACapture => f.write_str("not a pcap or pcapng capture (no magic number at the start)"),
            Error::Truncated { frame, offset } => {
                write!(f, "the capture is cut short: frame {frame} is incomplete at byte {offset}")
            }
            Error::Corrupt { frame, offset } => {
                write!(f, "the capture is corrupt at byte {offset}, where frame {frame} should be")
            }
            Error::UnknownLink(n) => write!(
                f,
                "link type {n} is not one jam reads (Ethernet, Linux cooked v1 and v2, raw IP, BSD loopback)"
            ),
            Error::NoInterface { frame, interface } => {
                write!(f, "frame {frame} names interface {interface}, which the capture never describes")
            }
        }
    }
}

/// Reads every frame of a pcap or pcapng capture held in `bytes`.
pub fn read(bytes: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    match bytes.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes),
        Some(&[a, b, c, d]) if CLASSIC_MAGICS.contains(&u32::from_le_bytes([a, b, c, d])) => read_pcap(bytes),
        _ => Err(Error::NotACapture),
    }
}

/// Classic pcap's magic numbers as read little-endian: microseconds and nanoseconds, each in both
/// byte orders.
const CLASSIC_MAGICS: [u32; 4] = [0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1];

fn read_pcap(bytes: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    let (mut rest, header) = pcap_parser::parse_pcap_header(bytes).map_err(|_| Error::NotACapture)?;
    let link =
        Link::from_number(header.network.0 as u32).ok_or(Error::UnknownLink(header.network.0 as u32))?;
    let unit: i64 = if header.is_nanosecond_precision() { 1 } else { 1000 };
    let parse =
        if header.is_bigendian() { pcap_parser::parse_pcap_frame_be } else { pcap_parser::parse_pcap_frame };
    let mut frames = Vec::with_capacity(bytes.len() / 100);
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let number = frames.len() + 1;
        let (after, block) = parse(rest).map_err(|e| stopped(e, number, at))?;
        if block.ts_usec as i64 * unit >= 1_000_000_000 {
            return Err(Error::Corrupt { frame: number, offset: at });
        }
        frames.push(Frame {
            time_ns: block.ts_sec as i64 * 1_000_000_000 + block.ts_usec as i64 * unit,
            wire_len: block.origlen.max(block.caplen),
            link,
            data: block.data,
        });
        rest = after;
    }
    Ok(frames)
}

/// A pcapng interface as far as reading its packets needs.
struct Interface {
    link: Result<Link, u32>,
    /// Time-stamp units per second.
    resolution: u64,
    offset_s: i64,
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    let mut frames = Vec::with_capacity(bytes.len() / 120);
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut big_endian = false;
    let mut rest = bytes;
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        let number = frames.len() + 1;
        // Every block says its length after its type. pcap-parser subtracts 12 from it unchecked
        // (found by fuzzing: a length under 12 overflows), so it is checked here first.
        let Some(len) = rest.get(4..8) else { return Err(Error::Truncated { frame: number, offset: at }) };
        let section = rest.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
        let be = if section { rest.get(8..12) == Some(&[0x1a, 0x2b, 0x3c, 0x4d]) } else { big_endian };
        let len = [len[0], len[1], len[2], len[3]];
        let len = if be { u32::from_be_bytes(len) } else { u32::from_le_bytes(len) } as usize;
        if len < 12 || len % 4 != 0 {
            return Err(Error::Corrupt { frame: number, offset: at });
        }
        if len > rest.len() {
            return Err(Error::Truncated { frame: number, offset: at });
        }
        let parse = if big_endian { pcap_parser::parse_block_be } else { pcap_parser::parse_block_le };
        // A section header says its own byte order: it is read by the magic, not the last one.
        let parsed = if section {
            pcap_parser::parse_sectionheaderblock(rest).map(|(r, b)| (r, Block::SectionHeader(b)))
        } else {
            parse(rest)
        };
        let (after, block) = parsed.map_err(|e| stopped(e, number, at))?;
        match block {
            Block::SectionHeader(shb) => {
                big_endian = shb.big_endian();
                interfaces.clear();
            }
            Block::InterfaceDescription(idb) => interfaces.push(Interface {
                link: Link::from_number(idb.linktype.0 as u32).ok_or(idb.linktype.0 as u32),
                resolution: idb.ts_resolution().ok_or(Error::Corrupt { frame: number, offset: at })?,
                offset_s: idb.ts_offset(),
            }),
            Block::EnhancedPacket(epb) => {
                let i = interfaces
                    .get(epb.if_id as usize)
                    .ok_or(Error::NoInterface { frame: number, interface: epb.if_id })?;
                let link = i.link.map_err(Error::UnknownLink)?;
                let units = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let secs = (units / i.resolution) as i64 + i.offset_s;
                let frac = (units % i.resolution) as u128 * 1_000_000_000 / i.resolution as u128;
                frames.push(Frame {
                    time_ns: secs.saturating_mul(1_000_000_000).saturating_add(frac as i64),
                    wire_len: epb.origlen.max(epb.caplen),
                    link,
                    data: epb.data.get(..epb.caplen as usize).unwrap_or(epb.data),
                });
            }
            Block::SimplePacket(spb) => {
                let i = interfaces.first().ok_or(Error::NoInterface { frame: number, interface: 0 })?;
                let link = i.link.map_err(Error::UnknownLink)?;
                let len = (spb.origlen as usize).min(spb.data.len());
                frames.push(Frame { time_ns: 0, wire_len: spb.origlen, link, data: &spb.data[..len] });
            }
            _ => {}
        }
        rest = after;
    }
    Ok(frames)
}

/// What a parser's failure at byte `offset` means for a person.
fn stopped(e: nom::Err<PcapError<&[u8]>>, frame: usize, offset: usize) -> Error {
    match e {
        nom::Err::Incomplete(_) | nom::Err::Error(PcapError::Incomplete(_) | PcapError::UnexpectedEof) => {
            Error::Truncated { frame, offset }
        }
        _ => Error::Corrupt { frame, offset },
    }
}

/// Writes a classic pcap file, microsecond time stamps, in this machine's byte order.
pub struct Writer<W: Write> {
    out: W,
    /// Whole records waiting to be written together.
    batch: Vec<u8>,
}

/// The batch written at once, at most (a few records more than this).
const BATCH_BYTES: usize = 64 * 1024;

impl<W: Write> Writer<W> {
    /// Writes the file header at once, so that even an empty capture is a valid file.
    pub fn new(mut out: W, link: Link, snaplen: u32) -> io::Result<Writer<W>> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2c3d4u32.to_ne_bytes());
        header.extend_from_slice(&2u16.to_ne_bytes());
        header.extend_from_slice(&4u16.to_ne_bytes());
        header.extend_from_slice(&0i32.to_ne_bytes());
        header.extend_from_slice(&0u32.to_ne_bytes());
        header.extend_from_slice(&snaplen.to_ne_bytes());
        header.extend_from_slice(&link.number().to_ne_bytes());
        out.write_all(&header)?;
        out.flush()?;
        Ok(Writer { out, batch: Vec::with_capacity(BATCH_BYTES + 2048) })
    }

    /// Adds one frame; it reaches the file whole, at the latest on [`Writer::flush`].
    pub fn push(&mut self, time_ns: i64, wire_len: u32, data: &[u8]) -> io::Result<()> {
        let (secs, nanos) = (time_ns.div_euclid(1_000_000_000), time_ns.rem_euclid(1_000_000_000));
        self.batch.extend_from_slice(&(secs as u32).to_ne_bytes());
        self.batch.extend_from_slice(&((nanos / 1000) as u32).to_ne_bytes());
        self.batch.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        self.batch.extend_from_slice(&wire_len.to_ne_bytes());
        self.batch.extend_from_slice(data);
        if self.batch.len() >= BATCH_BYTES { self.flush() } else { Ok(()) }
    }

    /// What has been written, once the records pushed so far are: an in-memory capture's bytes.
    pub fn written(&mut self) -> io::Result<&W> {
        self.flush()?;
        Ok(&self.out)
    }

    /// Writes the records pushed so far, in one write of whole records.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            self.out.write_all(&self.batch)?;
            self.batch.clear();
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(frames: &[(i64, &[u8])]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), Link::Raw, 65535).unwrap();
        for (t, data) in frames {
            w.push(*t, data.len() as u32 + 1, data).unwrap();
        }
        w.flush().unwrap();
        w.out
    }

    #[test]
    fn what_is_written_reads_back() {
        let bytes = written(&[(1_700_000_000_123_456_000, b"abc"), (1_700_000_001_000_001_000, b"")]);
        let frames = read(&bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0],
            Frame { time_ns: 1_700_000_000_123_456_000, wire_len: 4, link: Link::Raw, data: b"abc" }
        );
        assert_eq!((frames[1].time_ns, frames[1].data.len()), (1_700_000_001_000_001_000, 0));
        // An empty capture is a valid one.
        assert_eq!(read(&written(&[])).unwrap(), vec![]);
    }

    #[test]
    fn bad_captures_are_named_not_panicked_on() {
        assert_eq!(read(b""), Err(Error::NotACapture));
        assert_eq!(read(b"hello, world"), Err(Error::NotACapture));
        let bytes = written(&[(0, b"abcdef")]);
        for cut in 25..bytes.len() {
            assert_eq!(read(&bytes[..cut]), Err(Error::Truncated { frame: 1, offset: 24 }), "cut at {cut}");
        }
        let mut unknown = bytes.clone();
        unknown[20..24].copy_from_slice(&147u32.to_ne_bytes());
        assert_eq!(read(&unknown), Err(Error::UnknownLink(147)));
    }
}
