//! A TCP session as a sequence diagram, like Wireshark's Flow Graph, for a terminal (text) and
//! for a report (SVG): the client's and the server's columns, one arrow per segment with its
//! flags, relative numbers and payload, time running down. It marks what the sheet asks a
//! student to find: the three-way handshake, the data, who sends the first FIN, any reset. A
//! table hides that the 76-byte SYN carries no data; here every arrow says how many bytes of
//! payload it carries.

use std::fmt::Write as _;

use super::decode::{Packet, flag};
use super::table::{flag_names, shown};
use super::tcp::Followed;

/// One segment of a session, as the diagram draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrow {
    /// The frame's number in the capture.
    pub number: usize,
    /// Nanoseconds since the capture's first frame.
    pub time_ns: i64,
    /// Whether the client sent it.
    pub from_client: bool,
    /// Its TCP flags.
    pub flags: u16,
    /// Its relative sequence number.
    pub seq: u32,
    /// Its relative acknowledgement number.
    pub ack: u32,
    /// Its payload's length.
    pub len: usize,
    /// The payload's first bytes, made visible.
    pub payload: String,
}

impl Arrow {
    /// The arrow for a segment its session saw as `f`.
    pub fn new(number: usize, time_ns: i64, p: &Packet<'_>, f: &Followed) -> Arrow {
        Arrow {
            number,
            time_ns,
            from_client: f.from_client,
            flags: p.tcp.flags,
            seq: f.seq,
            ack: f.ack,
            len: p.tcp.len,
            payload: shown(p.tcp.payload),
        }
    }

    fn label(&self) -> String {
        let mut label = format!("{}  seq={}", flag_names(self.flags), self.seq);
        if self.flags & flag::ACK != 0 {
            let _ = write!(label, " ack={}", self.ack);
        }
        let _ = write!(label, "  len={}", self.len);
        if !self.payload.is_empty() {
            let _ = write!(label, "  \"{}\"", self.payload);
        }
        label
    }

    fn kind(&self) -> &'static str {
        if self.flags & flag::RST != 0 {
            "rst"
        } else if self.flags & flag::FIN != 0 {
            "fin"
        } else if self.len > 0 {
            "data"
        } else {
            "ctl"
        }
    }
}

/// A session to draw: its ends and its segments in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The client's and the server's `address:port`.
    pub client: String,
    /// The server's.
    pub server: String,
    /// Its segments.
    pub arrows: Vec<Arrow>,
}

const HANDSHAKE: [(bool, u16); 3] = [(true, flag::SYN), (false, flag::SYN | flag::ACK), (true, flag::ACK)];

/// The control flags that name a step (PSH, ECE, CWR left out).
fn control(flags: u16) -> u16 {
    flags & (flag::FIN | flag::SYN | flag::RST | flag::ACK)
}

impl Session {
    fn handshake(&self) -> bool {
        self.arrows.len() >= 3
            && self
                .arrows
                .iter()
                .zip(HANDSHAKE)
                .all(|(a, (c, f))| a.from_client == c && control(a.flags) == f && a.len == 0)
    }

    /// Each arrow's note: what it does in the session.
    fn notes(&self) -> Vec<String> {
        let shake = self.handshake();
        self.arrows
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if shake && i < 3 {
                    [
                        "handshake 1/3: the client asks",
                        "handshake 2/3: the server agrees",
                        "handshake 3/3: connected",
                    ][i]
                        .to_string()
                } else if a.flags & flag::RST != 0 {
                    "RESET: the connection is torn down, data in flight is lost".to_string()
                } else if a.flags & flag::FIN != 0 {
                    format!("FIN: the {} closes its side", if a.from_client { "client" } else { "server" })
                } else if a.len > 0 {
                    format!(
                        "{} byte{} of data ({})",
                        a.len,
                        if a.len == 1 { "" } else { "s" },
                        if a.from_client { "the request" } else { "the reply" }
                    )
                } else {
                    String::new()
                }
            })
            .collect()
    }

    /// The lines under the diagram: the handshake, the first FIN, resets.
    fn summary(&self) -> [String; 3] {
        let first_fin = self.arrows.iter().find(|a| a.flags & flag::FIN != 0);
        let resets = self.arrows.iter().filter(|a| a.flags & flag::RST != 0).count();
        [
            format!(
                "three-way handshake: {}",
                if self.handshake() { "SYN, SYN-ACK, ACK" } else { "not seen (the capture began later?)" }
            ),
            format!(
                "first FIN from: {}",
                match first_fin {
                    None => "none: the session did not close in this capture".to_string(),
                    Some(a) if a.from_client => format!("the client {}", self.client),
                    Some(_) => format!("the server {}", self.server),
                }
            ),
            format!(
                "resets: {}",
                if resets == 0 {
                    "none".to_string()
                } else {
                    format!("{resets}: the connection was reset, not closed")
                }
            ),
        ]
    }

    /// The diagram as text, session number `n` (from 1).
    pub fn text(&self, n: usize) -> String {
        let notes = self.notes();
        let labels: Vec<String> = self.arrows.iter().map(Arrow::label).collect();
        let width = labels.iter().map(|l| l.chars().count() + 8).max().unwrap_or(0).max(40);
        let start = self.arrows.first().map_or(0, |a| a.time_ns);
        let mut out = format!("TCP session {n}: client {}, server {}\n", self.client, self.server);
        let pad = (width + 3).saturating_sub(self.server.len());
        let _ = writeln!(out, "  {:>10}  {:<pad$}{}", "time (s)", self.client, self.server);
        for ((a, label), note) in self.arrows.iter().zip(&labels).zip(&notes) {
            let body = format!(" {label} ");
            let dashes = "-".repeat(width.saturating_sub(body.chars().count() + 1));
            let arrow =
                if a.from_client { format!("|-{body}{dashes}>|") } else { format!("|<{dashes}{body}-|") };
            let t = (a.time_ns - start) as f64 / 1e9;
            let _ = writeln!(out, "  {t:10.6}  {arrow}  {note}");
        }
        for line in self.summary() {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// Every session as one SVG picture, one diagram under the other.
pub fn svg(sessions: &[(usize, &Session)]) -> String {
    let (row, width, left, right) = (34, 1000, 200, 620);
    let mut parts = String::new();
    let mut y = 30;
    for (n, session) in sessions {
        let notes = session.notes();
        let _ = writeln!(
            parts,
            r#"<text x="20" y="{y}" class="title">TCP session {n}: client {}, server {}</text>"#,
            xml(&session.client),
            xml(&session.server)
        );
        y += 30;
        let _ = writeln!(
            parts,
            r#"<text x="{left}" y="{y}" class="host" text-anchor="middle">client {}</text>"#,
            xml(&session.client)
        );
        let _ = writeln!(
            parts,
            r#"<text x="{right}" y="{y}" class="host" text-anchor="middle">server {}</text>"#,
            xml(&session.server)
        );
        let _ = writeln!(parts, r#"<text x="20" y="{y}" class="host">time (s)</text>"#);
        let top = y + 10;
        let bottom = top + row * session.arrows.len() + 10;
        if session.handshake() {
            let _ = writeln!(
                parts,
                r#"<rect x="{}" y="{}" width="{}" height="{}" class="handshake"/>"#,
                left - 10,
                top + 4,
                right - left + 20,
                row * 3
            );
        }
        for x in [left, right] {
            let _ = writeln!(parts, r#"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" class="lifeline"/>"#);
        }
        let start = session.arrows.first().map_or(0, |a| a.time_ns);
        for (i, (a, note)) in session.arrows.iter().zip(&notes).enumerate() {
            let ly = top + row * (i + 1);
            let (x1, x2) = if a.from_client { (left, right) } else { (right, left) };
            let kind = a.kind();
            let t = (a.time_ns - start) as f64 / 1e9;
            let _ = writeln!(parts, r#"<text x="20" y="{}" class="time">{t:.6}</text>"#, ly + 4);
            let _ = writeln!(
                parts,
                r#"<line x1="{x1}" y1="{ly}" x2="{x2}" y2="{ly}" class="segment {kind}" marker-end="url(#arrow-{kind})"><title>frame {}</title></line>"#,
                a.number
            );
            let _ = writeln!(
                parts,
                r#"<text x="{}" y="{}" class="label" text-anchor="middle">{}</text>"#,
                (left + right) / 2,
                ly - 5,
                xml(&a.label())
            );
            if !note.is_empty() {
                let _ = writeln!(
                    parts,
                    r#"<text x="{}" y="{}" class="note">{}</text>"#,
                    right + 16,
                    ly + 4,
                    xml(note)
                );
            }
        }
        y = bottom + 24;
        for line in session.summary() {
            let _ = writeln!(parts, r#"<text x="20" y="{y}" class="summary">{}</text>"#, xml(&line));
            y += 20;
        }
        y += 30;
    }
    let markers: String = [("ctl", "#333"), ("data", "#1565c0"), ("fin", "#2e7d32"), ("rst", "#c62828")]
        .iter()
        .map(|(k, c)| {
            format!(
                r#"<marker id="arrow-{k}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{c}"/></marker>"#
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}">
<defs>{markers}<style>{STYLE}</style></defs>
<rect width="100%" height="100%" fill="white"/>
{parts}</svg>
"#
    )
}

const STYLE: &str = "
  text { font-family: DejaVu Sans Mono, monospace; font-size: 12px; fill: #222; }
  .title { font-size: 15px; font-weight: bold; }
  .host { font-weight: bold; }
  .time { fill: #666; }
  .note { fill: #555; font-style: italic; }
  .summary { font-size: 13px; }
  .lifeline { stroke: #999; stroke-width: 2; }
  .segment { stroke-width: 1.5; }
  .ctl { stroke: #333; } .data { stroke: #1565c0; stroke-width: 2.5; }
  .fin { stroke: #2e7d32; stroke-width: 2; } .rst { stroke: #c62828; stroke-width: 2.5; }
  .handshake { fill: #fff8e1; stroke: #ffcc80; }
";

/// Text made safe inside an XML element or attribute.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}
