//! `jam show`: a capture as the course's Wireshark showed it, from the capture file alone.
//!
//! Reads pcap and pcapng (Wireshark's own files too), and prints the sheet's packet list, one
//! session's or machine's segments, a frame's detail, or each session as a sequence diagram
//! (text, and SVG for a report). Everything it says comes from [`crate::packets`], whose rows
//! tshark checks in the tests.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::packets::flow::{self, Session};
use crate::packets::table::{self, HEADER};
use crate::packets::{self, Segment, pcap, segments};
use crate::server::protocol::DEFAULT_PORT;
use crate::settings::{self, Parsed, text, usage, value};
use crate::{Error, outln};

/// Settings of `jam show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowArgs {
    /// The capture file.
    pub file: PathBuf,
    /// Segments to or from this TCP port; 0 for every TCP segment.
    pub port: u16,
    /// Only this session (numbered from 1, in the order the capture first shows them).
    pub session: Option<usize>,
    /// Only segments to or from this address.
    pub host: Option<IpAddr>,
    /// Each session as a sequence diagram instead of the packet list.
    pub flow: bool,
    /// Also write the sessions' diagrams here, as SVG.
    pub svg: Option<PathBuf>,
    /// The detail of this frame instead of the packet list.
    pub detail: Option<usize>,
}

/// `jam show`.
pub fn run(args: &ShowArgs) -> Result<(), Error> {
    let name = args.file.display();
    let bytes = fs::read(&args.file).map_err(|e| Error::new(format!("cannot read {name}: {e}")))?;
    let frames = pcap::read(&bytes).map_err(|e| Error::new(format!("{name}: {e}")))?;
    let wanted = |s: &Segment<'_, '_>| {
        args.session.is_none_or(|n| s.followed.session + 1 == n)
            && args.host.is_none_or(|h| s.packet.ip.src == h || s.packet.ip.dst == h)
    };
    let cooked = frames.iter().any(|f| matches!(f.link, pcap::Link::LinuxSll | pcap::Link::LinuxSll2));
    if let Some(n) = args.detail {
        let Some(text) =
            packets::detail(&frames, args.port, n).map_err(|e| Error::new(format!("{name}: {e}")))?
        else {
            return Err(Error::new(format!(
                "{name}: frame {n} is not a TCP segment {} (the capture has {} frames)",
                port_words(args.port),
                frames.len()
            )));
        };
        return crate::print(&text);
    }
    if args.flow || args.svg.is_some() {
        let sessions =
            packets::sessions(&frames, args.port, wanted).map_err(|e| Error::new(format!("{name}: {e}")))?;
        let drawn: Vec<(usize, &Session)> = sessions.iter().map(|(n, s)| (*n, s)).collect();
        if drawn.is_empty() {
            return Err(Error::new(format!("{name}: no TCP segments {} to draw", port_words(args.port))));
        }
        if args.flow {
            let text: Vec<String> = drawn.iter().map(|(n, s)| s.text(*n)).collect();
            crate::print(&(text.join("\n")))?;
        }
        if let Some(out) = &args.svg {
            fs::write(out, flow::svg(&drawn))
                .map_err(|e| Error::new(format!("cannot write {}: {e}", out.display())))?;
            let arrows: usize = drawn.iter().map(|(_, s)| s.arrows.len()).sum();
            eprintln!("jam show: wrote {}: {} session(s), {arrows} segment(s)", out.display(), drawn.len());
        }
        return Ok(());
    }
    // The packet list, printed in pieces so that a large capture is not held twice.
    let mut out = String::with_capacity(1 << 16);
    out.push_str(HEADER);
    out.push('\n');
    let mut printed = Ok(());
    let mut shown = 0usize;
    segments(&frames, args.port, |s| {
        if printed.is_err() || !wanted(&s) {
            return;
        }
        table::write_row(&mut out, s.number, s.time_ns, s.frame, &s.packet, &s.followed);
        shown += 1;
        if out.len() >= 1 << 16 {
            printed = crate::print(&out);
            out.clear();
        }
    })
    .map_err(|e| Error::new(format!("{name}: {e}")))?;
    printed?;
    crate::print(&out)?;
    if shown == 0 {
        eprintln!("jam show: no TCP segments {} in {name} ({} frames)", port_words(args.port), frames.len());
    } else if cooked {
        outln!(
            "\n(Captured on \"any\": each frame has a 16-byte Linux cooked header where Ethernet has 14 bytes, so a\n SYN is 76 bytes here and 74 on one interface. The sheet's capture was made on \"any\".)"
        )?;
    }
    Ok(())
}

fn port_words(port: u16) -> String {
    if port == 0 { "at all".into() } else { format!("to or from port {port}") }
}

// The command line: arguments, help and parser.

/// `jam show --help`.
pub fn help() -> String {
    format!(
        "jam show: a capture as the course's Wireshark showed it

Usage: jam show [OPTIONS] FILE

Reads a pcap or pcapng file (jam capture's, tcpdump's, or one Wireshark saved) and prints the
sheet's columns for every TCP segment of the lab's port: No., Time, Source, Destination,
Protocol, Length, and Wireshark's Info (ports, [flags], relative Seq and Ack, Win, Len, options,
and analysis such as [TCP Retransmission]). Needs no tshark, Python or root.

Arguments:
  FILE                   the capture: pcap or pcapng; Ethernet, Linux cooked v1 and v2 (-i any),
                         raw IP or BSD loopback frames, IPv4 and IPv6

Options:
  -p, --port PORT        segments to or from this TCP port; 0 for all TCP [default: {port}]
  -s, --session N        only session N (numbered from 1 in the order they start)
      --host ADDR        only segments to or from this address (one machine's view)
      --detail N         frame N's layers, where its bytes go, and what it does
      --flow             each session as a sequence diagram: handshake, data, FINs
      --svg OUT          also write the diagrams to OUT as an SVG picture (for a report)
  -h, --help             print this help

Exit status: 0 when the capture was read, 1 when it cannot be (the reason in one line).
",
        port = DEFAULT_PORT,
    )
}

/// Parses `jam show`'s arguments.
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<ShowArgs>, Error> {
    let mut args = ShowArgs {
        file: PathBuf::new(),
        port: DEFAULT_PORT,
        session: None,
        host: None,
        flow: false,
        svg: None,
        detail: None,
    };
    let mut file = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('p') | Long("port") => args.port = value(p, "--port", settings::port)?,
            Short('s') | Long("session") => args.session = Some(value(p, "--session", settings::count)?),
            Long("host") => {
                args.host = Some(value(p, "--host", |s| {
                    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
                })?)
            }
            Long("detail") => args.detail = Some(value(p, "--detail", settings::count)?),
            Long("flow") => args.flow = true,
            Long("svg") => args.svg = Some(text(p)?.into()),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) if file.is_none() => file = Some(PathBuf::from(v)),
            other => return Err(usage(other.unexpected())),
        }
    }
    args.file = file.ok_or_else(|| Error::usage("jam show needs a capture file: jam show FILE"))?;
    Ok(Parsed::Run(args))
}
