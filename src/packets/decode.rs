//! A frame's bytes decoded into the headers the lab reads: the link layer, IPv4 or IPv6, TCP.
//!
//! The link header is read here (it is a few fixed fields); IP and TCP are sliced by etherparse,
//! which follows IPv4 options and IPv6 extension headers without allocating. Nothing is copied:
//! a [`Packet`] borrows the frame's bytes. A frame that is not TCP over IP decodes to `None`; a
//! TCP/IP frame whose headers the snapshot length cut short is an error, since nothing true can be
//! said about it.

use std::fmt;
use std::net::IpAddr;

use etherparse::{IpNumber, LaxIpSlice, TcpSlice};

use super::pcap::Link;

/// The link-layer header of a frame, as `--detail` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHeader {
    /// Ethernet II, with its addresses (and 4 bytes more for each 802.1Q tag).
    Ethernet {
        /// The source MAC address.
        src: [u8; 6],
        /// The destination MAC address.
        dst: [u8; 6],
        /// 802.1Q tags between the addresses and the EtherType.
        vlan_tags: u8,
    },
    /// Linux cooked capture v1 or v2, with the packet type (0 to us, 4 sent by us, ...).
    Cooked {
        /// 1 or 2.
        version: u8,
        /// 0 sent to this host, 1 broadcast, 2 multicast, 3 to another host, 4 sent by this host.
        packet_type: u16,
        /// The link-layer address of the sender, `address_len` bytes of it.
        address: [u8; 8],
        /// How many bytes of `address` count.
        address_len: u8,
    },
    /// No link header.
    Raw,
    /// A BSD loopback header: the address family.
    Loopback {
        /// The address family: 2 for IPv4, 10, 24, 28 or 30 for IPv6 (by operating system).
        family: u32,
    },
}

impl LinkHeader {
    /// Its length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        match self {
            LinkHeader::Ethernet { vlan_tags, .. } => 14 + 4 * *vlan_tags as usize,
            LinkHeader::Cooked { version: 1, .. } => 16,
            LinkHeader::Cooked { .. } => 20,
            LinkHeader::Raw => 0,
            LinkHeader::Loopback { .. } => 4,
        }
    }
}

/// The IP header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    /// 4 or 6.
    pub version: u8,
    /// The source address.
    pub src: IpAddr,
    /// The destination address.
    pub dst: IpAddr,
    /// The header's length with its options or extension headers.
    pub header_len: usize,
    /// The datagram's length as the header states it (what was on the wire).
    pub total_len: usize,
    /// IPv4's time to live, IPv6's hop limit.
    pub ttl: u8,
    /// IPv4's identification (0 for IPv6).
    pub id: u16,
}

/// TCP flag bits, as the header carries them (the low nine bits of the 16-bit word).
#[allow(missing_docs)]
pub mod flag {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const AE: u16 = 0x100;
}

/// The TCP header and payload of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// The source port.
    pub src_port: u16,
    /// The destination port.
    pub dst_port: u16,
    /// The sequence number, as sent.
    pub seq: u32,
    /// The acknowledgement number, as sent (meaningful with ACK).
    pub ack: u32,
    /// The flag bits ([`flag`]).
    pub flags: u16,
    /// The window field as sent, before any scaling.
    pub window: u16,
    /// The urgent pointer.
    pub urgent: u16,
    /// The header's length with its options.
    pub header_len: usize,
    /// The options' bytes.
    pub options: &'a [u8],
    /// The payload's length on the wire (from the IP header, whatever was captured).
    pub len: usize,
    /// The payload's captured bytes (at most `len`).
    pub payload: &'a [u8],
}

/// A decoded TCP/IP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The link layer.
    pub link: LinkHeader,
    /// The IP layer.
    pub ip: Ip,
    /// The TCP layer.
    pub tcp: Tcp<'a>,
}

/// A TCP/IP frame whose headers were not all captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncated {
    /// The layer that was cut short.
    pub layer: &'static str,
    /// The bytes captured.
    pub captured: usize,
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "only {} bytes were captured, fewer than its headers up to {}: the capture's snapshot length is too short",
            self.captured, self.layer
        )
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 2] = [0x8100, 0x88a8];

/// Decodes a frame: `Ok(None)` if it is not TCP over IPv4 or IPv6.
pub fn decode(link: Link, data: &[u8]) -> Result<Option<Packet<'_>>, Truncated> {
    let cut = |layer| Truncated { layer, captured: data.len() };
    let (header, ip_version) = match link {
        Link::Ethernet => {
            let Some(fixed) = data.get(..14) else { return Ok(None) };
            let mut ethertype = u16::from_be_bytes([fixed[12], fixed[13]]);
            let mut vlan_tags = 0u8;
            while ETHERTYPE_VLAN.contains(&ethertype) && vlan_tags < 2 {
                let at = 14 + 4 * vlan_tags as usize;
                let Some(tag) = data.get(at..at + 4) else { return Ok(None) };
                ethertype = u16::from_be_bytes([tag[2], tag[3]]);
                vlan_tags += 1;
            }
            let header = LinkHeader::Ethernet {
                dst: fixed[..6].try_into().unwrap(),
                src: fixed[6..12].try_into().unwrap(),
                vlan_tags,
            };
            (header, ethertype)
        }
        Link::LinuxSll => {
            let Some(h) = data.get(..16) else { return Ok(None) };
            let header = LinkHeader::Cooked {
                version: 1,
                packet_type: u16::from_be_bytes([h[0], h[1]]),
                address_len: h[5].min(8),
                address: h[6..14].try_into().unwrap(),
            };
            (header, u16::from_be_bytes([h[14], h[15]]))
        }
        Link::LinuxSll2 => {
            let Some(h) = data.get(..20) else { return Ok(None) };
            let header = LinkHeader::Cooked {
                version: 2,
                packet_type: h[10] as u16,
                address_len: h[11].min(8),
                address: h[12..20].try_into().unwrap(),
            };
            (header, u16::from_be_bytes([h[0], h[1]]))
        }
        Link::Raw => match data.first().map(|b| b >> 4) {
            Some(4) => (LinkHeader::Raw, ETHERTYPE_IPV4),
            Some(6) => (LinkHeader::Raw, ETHERTYPE_IPV6),
            _ => return Ok(None),
        },
        Link::Null | Link::Loop => {
            let Some(h) = data.get(..4) else { return Ok(None) };
            let raw = [h[0], h[1], h[2], h[3]];
            // DLT_NULL is in the capturing host's order, which the file does not say: the family
            // is small, so whichever order gives a small number is the one.
            let family = match link {
                Link::Loop => u32::from_be_bytes(raw),
                _ => u32::from_le_bytes(raw).min(u32::from_be_bytes(raw)),
            };
            let version = match family {
                2 => ETHERTYPE_IPV4,
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => return Ok(None),
            };
            (LinkHeader::Loopback { family }, version)
        }
    };
    if ip_version != ETHERTYPE_IPV4 && ip_version != ETHERTYPE_IPV6 {
        return Ok(None);
    }
    let ip_bytes = &data[header.len()..];
    let (ip, _) = LaxIpSlice::from_slice(ip_bytes).map_err(|_| cut("IP"))?;
    let (ip, payload) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let auth = v4.extensions().auth.map_or(0, |a| a.slice().len());
            let header_len = h.slice().len() + auth;
            let total = h.total_len() as usize;
            let ip = Ip {
                version: 4,
                src: h.source_addr().into(),
                dst: h.destination_addr().into(),
                header_len,
                // 0: segmentation offload handed the capture a datagram larger than a length field.
                total_len: if total == 0 { ip_bytes.len() } else { total },
                ttl: h.ttl(),
                id: h.identification(),
            };
            (ip, v4.payload())
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let header_len = 40 + v6.extensions().slice().len();
            let payload_len = h.payload_length() as usize;
            let ip = Ip {
                version: 6,
                src: h.source_addr().into(),
                dst: h.destination_addr().into(),
                header_len,
                total_len: if payload_len == 0 { ip_bytes.len() } else { 40 + payload_len },
                ttl: h.hop_limit(),
                id: 0,
            };
            (ip, v6.payload())
        }
    };
    if payload.ip_number != IpNumber::TCP {
        return Ok(None);
    }
    if payload.fragmented {
        // A fragment's TCP header is in the first fragment alone; jam does not reassemble.
        return Ok(None);
    }
    let tcp = TcpSlice::from_slice(payload.payload).map_err(|_| cut("TCP"))?;
    let header_len = tcp.header_len();
    let len = ip.total_len.saturating_sub(ip.header_len + header_len);
    let captured = &payload.payload[header_len..];
    let tcp = Tcp {
        src_port: tcp.source_port(),
        dst_port: tcp.destination_port(),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: u16::from_be_bytes([tcp.slice()[12], tcp.slice()[13]]) & 0x1ff,
        window: tcp.window_size(),
        urgent: tcp.urgent_pointer(),
        header_len,
        options: &tcp.slice()[20..header_len],
        len,
        payload: &captured[..captured.len().min(len)],
    };
    Ok(Some(Packet { link: header, ip, tcp }))
}

/// A TCP option, as Wireshark names it in the Info column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpOption {
    /// End of the option list.
    Eol,
    /// Padding.
    Nop,
    /// Maximum segment size.
    Mss(u16),
    /// Window scale: the shift.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks, left and right edges, up to four.
    Sack([(u32, u32); 4], usize),
    /// Timestamps: the sender's value and the echo.
    Timestamp(u32, u32),
    /// Any other kind, with its length.
    Other(u8, usize),
}

/// The options in `bytes`, in order; a malformed one ends the list.
pub fn options(bytes: &[u8]) -> impl Iterator<Item = TcpOption> + '_ {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let (&kind, after) = rest.split_first()?;
        match kind {
            0 => {
                rest = &[];
                Some(TcpOption::Eol)
            }
            1 => {
                rest = after;
                Some(TcpOption::Nop)
            }
            _ => {
                let len = *after.first()? as usize;
                if len < 2 || len > rest.len() {
                    rest = &[];
                    return None;
                }
                let body = &rest[2..len];
                rest = &rest[len..];
                let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                Some(match (kind, body.len()) {
                    (2, 2) => TcpOption::Mss(u16::from_be_bytes([body[0], body[1]])),
                    (3, 1) => TcpOption::WindowScale(body[0]),
                    (4, 0) => TcpOption::SackPermitted,
                    (5, n) if n % 8 == 0 && n > 0 => {
                        let mut blocks = [(0, 0); 4];
                        let count = (n / 8).min(4);
                        for (i, block) in blocks.iter_mut().enumerate().take(count) {
                            *block = (be32(&body[i * 8..]), be32(&body[i * 8 + 4..]));
                        }
                        TcpOption::Sack(blocks, count)
                    }
                    (8, 8) => TcpOption::Timestamp(be32(body), be32(&body[4..])),
                    _ => TcpOption::Other(kind, len),
                })
            }
        }
    })
}
