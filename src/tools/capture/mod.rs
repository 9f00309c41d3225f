//! `jam capture`: the lab's TCP segments from a machine's own interfaces, into a pcap file and
//! onto the terminal, with nothing but jam: no tcpdump, no tshark, no root beyond CAP_NET_RAW.
//!
//! A packet socket (AF_PACKET) with a kernel filter for the port ([`crate::packets::filter`]).
//! On every interface but loopback (the default), frames come up cooked, as with `tcpdump -i any`,
//! and are written as Linux cooked capture v1: the sheet's own format, whose SYN is 76 bytes. On
//! one interface they come up whole, as Ethernet, whose SYN is 74. Each record reaches the file
//! whole, and the file is flushed whenever the interface goes quiet, so that it is a valid
//! capture at every moment; SIGINT and SIGTERM end it cleanly, and the kernel's drop count is
//! reported at the end, as tcpdump reports it.
//!
//! With `--web`, the same segments are shown live in a browser as well ([`web`]).

pub mod web;

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lexopt::prelude::*;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessageOwned, LinkAddr, MsgFlags, MultiHeaders, recvmmsg, setsockopt, sockopt,
};
use nix::sys::time::{TimeSpec, TimeVal};

use crate::packets::decode::decode;
use crate::packets::filter::{self, KEEP};
use crate::packets::pcap::{Frame, Link, Writer};
use crate::packets::table::{HEADER, Row};
use crate::packets::tcp::Tracker;
use crate::server::protocol::DEFAULT_PORT;
use crate::server::shutdown::Shutdown;
use crate::settings::{self, Parsed, text, usage, value};
use crate::{Error, http, outln, sys};
use web::Live;

/// A frame's packet type when this host sent it (`PACKET_OUTGOING`).
const PACKET_OUTGOING: u8 = 4;
/// The socket's receive queue: room for bursts while the capture writes. The kernel counts what
/// overflows it as dropped.
const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;
/// How often a quiet capture looks at the clock and the signals, and flushes its file.
const POLL: Duration = Duration::from_millis(200);
/// The longest the capture goes on reading what was queued before its stop.
const DRAIN: Duration = Duration::from_secs(2);
/// The most of one frame kept: an IP datagram's largest, with a link header.
const FRAME_BYTES: usize = 65_536 + 64;
/// Frames taken from the kernel per call (`recvmmsg`): one system call for a burst, not one a
/// frame, as tcpdump's ring spares it.
const BATCH: usize = 32;
/// Linux cooked capture v1's header.
const SLL_HEADER: usize = 16;

/// Settings of `jam capture`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureArgs {
    /// One interface, or every one but loopback.
    pub interface: Option<String>,
    /// Segments to or from this TCP port.
    pub port: u16,
    /// The pcap file to write.
    pub write: Option<PathBuf>,
    /// Stop after this many segments.
    pub count: Option<u64>,
    /// Stop after this long.
    pub seconds: Option<Duration>,
    /// No rows on the terminal.
    pub quiet: bool,
    /// Serve the browser view here.
    pub web: Option<SocketAddr>,
}

/// Where frames come from and how they are written.
struct Source {
    cooked: bool,
    ifindex: u32,
    link: Link,
    /// Interfaces whose frames are passed over (loopback, when capturing on all).
    skip: Vec<usize>,
    /// The loopback interfaces.
    loopbacks: Vec<usize>,
    name: String,
}

fn source(interface: Option<&str>) -> Result<Source, Error> {
    let interfaces =
        nix::ifaddrs::getifaddrs().map_err(|e| Error::new(format!("cannot list the interfaces: {e}")))?;
    let mut loopbacks = Vec::new();
    let mut names = Vec::new();
    for i in interfaces {
        if !names.contains(&i.interface_name) {
            names.push(i.interface_name.clone());
        }
        if i.flags.contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK) {
            if let Ok(index) = nix::net::if_::if_nametoindex(i.interface_name.as_str()) {
                loopbacks.push(index as usize);
            }
        }
    }
    loopbacks.dedup();
    match interface {
        None | Some("any") => Ok(Source {
            cooked: true,
            ifindex: 0,
            link: Link::LinuxSll,
            skip: if interface.is_none() { loopbacks.clone() } else { Vec::new() },
            loopbacks,
            name: if interface.is_none() { "every interface but loopback".into() } else { "any".into() },
        }),
        Some(name) => {
            let index = nix::net::if_::if_nametoindex(name).map_err(|_| {
                Error::new(format!("no interface {name:?} here: there are {}", names.join(", ")))
            })?;
            // Ethernet and loopback hand up Ethernet frames; anything else (a tunnel) is read cooked.
            let hatype = std::fs::read_to_string(format!("/sys/class/net/{name}/type")).unwrap_or_default();
            let ethernet = matches!(hatype.trim(), "1" | "772");
            Ok(Source {
                cooked: !ethernet,
                ifindex: index,
                link: if ethernet { Link::Ethernet } else { Link::LinuxSll },
                skip: Vec::new(),
                loopbacks,
                name: name.into(),
            })
        }
    }
}

/// `jam capture`.
pub fn run(args: &CaptureArgs) -> Result<(), Error> {
    // First, before any thread: SIGINT and SIGTERM end the capture through this.
    let stop = Shutdown::new();
    stop.on_signals("jam-capture-signals")?;
    let from = source(args.interface.as_deref())?;
    let loopback = from.loopbacks.first().map(|&i| i as u32);
    let program = filter::tcp_port_program(if from.cooked { 0 } else { 14 }, args.port, loopback);
    let sock =
        sys::packet_socket(from.cooked, from.ifindex, &program).map_err(|e| match e.raw_os_error() {
            Some(libc_eperm) if libc_eperm == Errno::EPERM as i32 => Error::new(
                "jam capture needs CAP_NET_RAW: run it as root, or give the container cap_add: [NET_RAW]",
            ),
            _ => Error::new(format!("cannot open a packet socket: {e}")),
        })?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
    setsockopt(&sock, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| Error::new(format!("time stamps: {e}")))?;
    setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(0, POLL.as_micros() as _))
        .map_err(|e| Error::new(format!("receive timeout: {e}")))?;

    let mut writer = match &args.write {
        Some(path) => {
            let file = File::create(path)
                .map_err(|e| Error::new(format!("cannot create {}: {e}", path.display())))?;
            Some(Writer::new(file, from.link, KEEP).map_err(|e| write_error(path, e))?)
        }
        None => None,
    };
    let (live, page) = match args.web {
        Some(addr) => {
            let (live, bound) = serve_page(addr, &from, args.port)?;
            (Some(live), Some(bound))
        }
        None => (None, None),
    };
    eprintln!(
        "jam capture: TCP port {} on {}{}; Ctrl-C or SIGTERM to stop",
        args.port,
        from.name,
        args.write.as_ref().map_or(String::new(), |p| format!(", writing {}", p.display()))
    );
    if !args.quiet {
        outln!("{HEADER}")?;
    }
    let counted = capture(&sock, &from, args, &stop, writer.as_mut(), live.as_deref());
    if let (Some(w), Some(path)) = (writer.as_mut(), &args.write) {
        w.flush().map_err(|e| write_error(path, e))?;
    }
    let captured = counted?;
    let (received, dropped) = sys::packet_statistics(&sock).unwrap_or((0, 0));
    eprintln!("{captured} packets captured");
    eprintln!("{} packets received by filter", received.max(captured));
    eprintln!("{dropped} packets dropped by kernel");
    if let (Some(live), Some(addr)) = (live, page) {
        live.end(captured, dropped);
        let behind = live.dropped_viewers();
        if behind > 0 {
            eprintln!(
                "{behind} page viewers fell behind and were dropped (a browser reconnects and catches up)"
            );
        }
        // Ended by --count or --seconds: the page stays, to be read and downloaded from.
        if let Some(signal) = stop.listen() {
            eprintln!(
                "jam capture: the capture has ended; its page stays at {}; Ctrl-C to stop",
                page_url(addr)
            );
            futures_lite::future::block_on(signal);
        }
    }
    Ok(())
}

/// Starts the browser view on `addr`; returns it and the address it is on.
fn serve_page(addr: SocketAddr, from: &Source, port: u16) -> Result<(Arc<Live>, SocketAddr), Error> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        Error::new(format!("cannot serve the page on {addr}: {e}; choose another with --web ADDR"))
    })?;
    let addr = listener.local_addr().map_err(|e| Error::new(format!("the page's address: {e}")))?;
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let live = Arc::new(Live::new(machine.trim(), &from.name, port, from.link, KEEP));
    let handler = live.clone();
    http::serve(listener, "jam-capture-web", Arc::new(move |request| handler.handle(request)))
        .map_err(|e| Error::new(format!("cannot start the page's server: {e}")))?;
    eprintln!("jam capture: the page is at {}", page_url(addr));
    Ok((live, addr))
}

/// The page's address as a browser is given it: an unspecified address (0.0.0.0) is reached at
/// loopback from this machine.
fn page_url(addr: SocketAddr) -> String {
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    format!("http://{shown}/")
}

fn write_error(path: &std::path::Path, e: io::Error) -> Error {
    Error::new(format!("cannot write {}: {e}", path.display()))
}

/// Captures until the count, the time or a signal; returns the segments captured.
fn capture(
    sock: &OwnedFd,
    from: &Source,
    args: &CaptureArgs,
    stop: &Shutdown,
    mut writer: Option<&mut Writer<File>>,
    live: Option<&Live>,
) -> Result<u64, Error> {
    let deadline = args.seconds.map(|d| Instant::now() + d);
    // Cooked frames are read after room for the cooked header, which is written in front.
    let at = if from.cooked { SLL_HEADER } else { 0 };
    let mut bufs = vec![vec![0u8; SLL_HEADER + FRAME_BYTES]; BATCH];
    let mut headers = MultiHeaders::<LinkAddr>::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec)));
    let mut tracker = Tracker::new();
    let mut first_ns = None;
    let mut captured = 0u64;
    let mut dirty = false;
    // Once stopped (a signal, or the time is up), what the kernel has already queued is still
    // read, for at most DRAIN: those frames passed before the stop.
    let mut draining: Option<Instant> = None;
    while args.count.is_none_or(|n| captured < n) {
        if draining.is_none() && (stop.is_triggered() || deadline.is_some_and(|d| Instant::now() >= d)) {
            draining = Some(Instant::now() + DRAIN);
        }
        if draining.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // Up to BATCH frames a call: it waits for the first (or the poll interval), then takes
        // what else is queued; when draining, it only takes what is queued.
        let got: Vec<(usize, Option<LinkAddr>, i64)> = {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[at..])]).collect();
            let flags = MsgFlags::MSG_TRUNC
                | if draining.is_some() { MsgFlags::MSG_DONTWAIT } else { MsgFlags::MSG_WAITFORONE };
            match recvmmsg(sock.as_raw_fd(), &mut headers, slices.iter_mut(), flags, None) {
                Ok(results) => results.map(|m| (m.bytes, m.address, stamp(&m))).collect(),
                Err(Errno::EAGAIN | Errno::EINTR) => Vec::new(),
                Err(e) => return Err(Error::new(format!("capture failed: {e}"))),
            }
        };
        if got.is_empty() {
            if draining.is_some() {
                break;
            }
            if dirty {
                if let (Some(w), Some(path)) = (writer.as_deref_mut(), &args.write) {
                    w.flush().map_err(|e| write_error(path, e))?;
                }
                dirty = false;
            }
            continue;
        }
        for ((len, addr, time_ns), buf) in got.into_iter().zip(bufs.iter_mut()) {
            let Some(addr) = addr else { continue };
            // Each frame on loopback passes twice, going out and coming in: keep the one coming
            // in, as libpcap does.
            if from.skip.contains(&addr.ifindex())
                || (addr.pkttype() == PACKET_OUTGOING && from.loopbacks.contains(&addr.ifindex()))
            {
                continue;
            }
            if args.count.is_some_and(|n| captured >= n) {
                break;
            }
            let kept = len.min(buf.len() - at);
            let wire = len + at;
            if from.cooked {
                let header = &mut buf[..SLL_HEADER];
                header[0..2].copy_from_slice(&(addr.pkttype() as u16).to_be_bytes());
                header[2..4].copy_from_slice(&addr.hatype().to_be_bytes());
                header[4..6].copy_from_slice(&(addr.halen() as u16).to_be_bytes());
                header[6..14].fill(0);
                if let Some(mac) = addr.addr() {
                    let n = addr.halen().min(6);
                    header[6..6 + n].copy_from_slice(&mac[..n]);
                }
                // sll_protocol is already in network order.
                header[14..16].copy_from_slice(&addr.protocol().to_ne_bytes());
            }
            let frame = &buf[..at + kept];
            captured += 1;
            if let (Some(w), Some(path)) = (writer.as_deref_mut(), &args.write) {
                w.push(time_ns, wire as u32, frame).map_err(|e| write_error(path, e))?;
                dirty = true;
            }
            if !args.quiet || live.is_some() {
                let start = *first_ns.get_or_insert(time_ns);
                if let Ok(Some(packet)) = decode(from.link, frame) {
                    let followed = tracker.follow(captured as usize, &packet);
                    let f = Frame { time_ns, wire_len: wire as u32, link: from.link, data: frame };
                    // One row for the terminal and the page.
                    let row = Row::new(captured as usize, time_ns - start, &f, &packet, &followed);
                    if let Some(live) = live {
                        live.push(&f, &row, &packet, &followed);
                    }
                    if !args.quiet {
                        outln!("{}", row.line())?;
                    }
                }
            }
        }
    }
    Ok(captured)
}

/// A received frame's kernel time stamp, else the clock's.
fn stamp(m: &nix::sys::socket::RecvMsg<'_, '_, LinkAddr>) -> i64 {
    m.cmsgs()
        .ok()
        .and_then(|mut c| {
            c.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(t) => Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec()),
                _ => None,
            })
        })
        .unwrap_or_else(now_ns)
}

/// The clock now, in nanoseconds since 1970, as a capture's time stamps are.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

// The command line: arguments, help and parser.

/// `jam capture --help`.
pub fn help() -> String {
    format!(
        "jam capture: the lab's TCP segments on this machine's interfaces, like tcpdump

Usage: jam capture [OPTIONS]

Prints each segment to or from the port as it passes, in the sheet's columns (as jam show does),
and with -w writes them to a pcap file that Wireshark, tcpdump, tshark and jam show open. The
file is valid at every moment; SIGINT or SIGTERM ends the capture cleanly, and the kernel's drop
count is reported at the end. Needs CAP_NET_RAW (root, or a container with cap_add: [NET_RAW]).

Options:
  -i, --interface IFACE  capture on this interface only (Ethernet frames, a SYN is 74 bytes), or
                         on any (Linux cooked frames, as the sheet's capture: a SYN is 76 bytes)
                         [default: every interface but loopback, cooked]
  -p, --port PORT        segments to or from this TCP port [default: {port}]
  -w, --write FILE       also write them to FILE, a pcap capture
  -c, --count N          stop after N segments
      --seconds DUR      stop after DUR: seconds, or a span such as 30s, 2m
  -q, --quiet            no rows on the terminal (with -w: only the file)
      --web ADDR         also show them live on a page, the course's Wireshark in a browser:
                         ADDR is PORT (on 127.0.0.1) or HOST:PORT (0.0.0.0:50001 for every
                         address); the page stays up after --count or --seconds until Ctrl-C
  -h, --help             print this help
",
        port = DEFAULT_PORT,
    )
}

/// Parses `jam capture`'s arguments.
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<CaptureArgs>, Error> {
    let mut args = CaptureArgs {
        interface: None,
        port: DEFAULT_PORT,
        write: None,
        count: None,
        seconds: None,
        quiet: false,
        web: None,
    };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('i') | Long("interface") => args.interface = Some(text(p)?),
            Short('p') | Long("port") => args.port = value(p, "--port", settings::port)?,
            Short('w') | Long("write") => args.write = Some(text(p)?.into()),
            Short('c') | Long("count") => args.count = Some(value(p, "--count", settings::count)? as u64),
            Long("seconds") => args.seconds = Some(value(p, "--seconds", settings::duration)?),
            Short('q') | Long("quiet") => args.quiet = true,
            Long("web") => args.web = Some(value(p, "--web", http::page_addr)?),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Parsed::Run(args))
}
