//! `jam capture --web`: the course's Wireshark in a browser. One page, embedded in the binary
//! ([`PAGE`]), served by [`crate::http`] while the capture runs:
//!
//! - `/`: the page: the packet list growing live, a filter to one machine or one session, a
//!   clicked frame's detail, the selected session's flow diagram, and the downloads;
//! - `/events`: the rows as server-sent events, from the first (or from `Last-Event-ID` when a
//!   browser reconnects), then live;
//! - `/detail/N`: frame N's detail, as `jam show --detail N` prints it;
//! - `/flow/S.svg`: session S's diagram, as `jam show --svg` draws it;
//! - `/capture.pcap`: everything captured so far, as a pcap file.
//!
//! The capture thread hands each segment to [`Live::push`], which keeps the frame (in an
//! in-memory pcap, bounded by [`MAX_KEPT_BYTES`] and [`MAX_KEPT_FRAMES`]) and its row, and offers
//! the row to every viewer's queue without waiting: a viewer whose queue of [`VIEWER_QUEUE`]
//! rows is full is dropped (its browser reconnects and catches up from what is kept), so no
//! viewer can stall the capture or another viewer. Details and diagrams are made from the kept
//! frames by [`crate::packets`], so the page shows exactly what `jam show` shows of the file.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::http::{Events, Reply, Request, Status};
use crate::json_string;
use crate::packets::decode::{Packet, flag};
use crate::packets::pcap::{self, Frame, Link, Writer};
use crate::packets::table::{Row, Seconds};
use crate::packets::tcp::{Analysis, Followed};
use crate::packets::{self, flow};

/// The page: HTML, CSS and JavaScript in one file, no framework and nothing fetched from
/// elsewhere (the lab may be offline).
pub const PAGE: &str = include_str!("page.html");
/// The most bytes of frames kept for the page and the download; a capture past it goes on (and
/// into `-w`'s file), and the page says that it shows the first part.
pub const MAX_KEPT_BYTES: usize = 64 * 1024 * 1024;
/// The most frames kept, for the same reason: each has a row of about 200 bytes too.
pub const MAX_KEPT_FRAMES: usize = 200_000;
/// Rows queued for one viewer, at most; one that falls this far behind is dropped.
pub const VIEWER_QUEUE: usize = 4096;
/// How often a quiet stream sends a comment, which finds a viewer that has gone.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long the end of the capture waits for viewers to be told.
const END_GRACE: Duration = Duration::from_secs(1);

/// What a viewer's stream is sent.
enum Message {
    Row(u64, Arc<str>),
    /// The page holds all it may: later segments are captured but not shown.
    Full(Arc<str>),
    End(Arc<str>),
}

/// A new viewer's start: the rows so far, whether the page is full, then a queue of those to
/// come, or the end.
struct Subscription {
    backlog: Vec<Arc<str>>,
    full: Option<Arc<str>>,
    queue: Option<Receiver<Message>>,
    end: Option<Arc<str>>,
}

/// The capture as the page sees it, shared by the capture thread and the page's connections.
pub struct Live {
    inner: Mutex<Inner>,
    /// Who the page is about, as the `info` event's JSON.
    info: String,
    /// The capture's port, for details and diagrams.
    port: u16,
    /// The download's file name.
    file_name: String,
    /// Event streams being written now.
    streaming: AtomicUsize,
}

struct Inner {
    pcap: Writer<Vec<u8>>,
    /// Each kept frame's row, as the event's JSON; frame n is `rows[n - 1]`.
    rows: Vec<Arc<str>>,
    kept_bytes: usize,
    /// Frames seen but not kept, past the bounds.
    not_kept: u64,
    /// The `full` event, once the bounds were reached.
    full: Option<Arc<str>>,
    /// The most frames kept ([`MAX_KEPT_FRAMES`]; smaller in the tests).
    max_frames: usize,
    viewers: Vec<SyncSender<Message>>,
    /// Viewers dropped for falling behind: a full queue, or a write that timed out.
    dropped_viewers: u64,
    /// The end event, once the capture has ended.
    ended: Option<Arc<str>>,
}

impl Live {
    /// A view of a capture of `port` on `machine`'s `interfaces`, in frames of `link`.
    pub fn new(machine: &str, interfaces: &str, port: u16, link: Link, snaplen: u32) -> Live {
        let pcap = Writer::new(Vec::new(), link, snaplen).expect("writing to memory does not fail");
        Live {
            inner: Mutex::new(Inner {
                pcap,
                rows: Vec::new(),
                kept_bytes: 0,
                not_kept: 0,
                full: None,
                max_frames: MAX_KEPT_FRAMES,
                viewers: Vec::new(),
                dropped_viewers: 0,
                ended: None,
            }),
            info: format!(
                r#"{{"machine":{},"interfaces":{},"port":{port},"link":{},"max_frames":{MAX_KEPT_FRAMES}}}"#,
                json_string(machine),
                json_string(interfaces),
                json_string(link_name(link)),
            ),
            port,
            file_name: format!("{}.pcap", file_safe(machine)),
            streaming: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A viewer thread that panicked leaves the rows as they were: still good to read.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps one captured segment, whose row (as the terminal shows it) is `row`, and offers it to
    /// every viewer; never waits for one. The page numbers its rows itself, as its own capture
    /// file holds them.
    pub fn push(&self, frame: &Frame<'_>, row: &Row, packet: &Packet<'_>, followed: &Followed) {
        let mut inner = self.lock();
        if inner.rows.len() >= inner.max_frames || inner.kept_bytes + frame.data.len() > MAX_KEPT_BYTES {
            inner.not_kept += 1;
            if inner.full.is_none() {
                // Said once, to every viewer now and to each that comes later.
                let full: Arc<str> = format!(r#"{{"kept":{}}}"#, inner.rows.len()).into();
                for v in &inner.viewers {
                    let _ = v.try_send(Message::Full(full.clone()));
                }
                inner.full = Some(full);
            }
            return;
        }
        // Writing to memory does not fail.
        let _ = inner.pcap.push(frame.time_ns, frame.wire_len, frame.data);
        inner.kept_bytes += frame.data.len() + 16;
        let number = inner.rows.len() + 1;
        let row: Arc<str> = row_json(number, row, frame, packet, followed).into();
        inner.rows.push(row.clone());
        let mut dropped = 0;
        inner.viewers.retain(|v| match v.try_send(Message::Row(number as u64, row.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                dropped += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        inner.dropped_viewers += dropped;
    }

    /// Tells every viewer that the capture has ended, and waits a moment for them to be told.
    pub fn end(&self, captured: u64, dropped_by_kernel: u64) {
        {
            let mut inner = self.lock();
            let end: Arc<str> = format!(
                r#"{{"captured":{captured},"kept":{},"dropped_by_kernel":{dropped_by_kernel}}}"#,
                inner.rows.len()
            )
            .into();
            for v in inner.viewers.drain(..) {
                let _ = v.try_send(Message::End(end.clone()));
            }
            inner.ended = Some(end);
        }
        let deadline = Instant::now() + END_GRACE;
        while self.streaming.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Viewers dropped so far for falling behind.
    pub fn dropped_viewers(&self) -> u64 {
        self.lock().dropped_viewers
    }

    /// Rows from frame `after + 1` on, and a queue for those to come (none once ended).
    fn subscribe(&self, after: usize) -> Subscription {
        let mut inner = self.lock();
        let backlog = inner.rows.get(after..).unwrap_or_default().to_vec();
        let full = inner.full.clone();
        if let Some(end) = &inner.ended {
            return Subscription { backlog, full, queue: None, end: Some(end.clone()) };
        }
        let (tx, rx) = mpsc::sync_channel(VIEWER_QUEUE);
        inner.viewers.push(tx);
        Subscription { backlog, full, queue: Some(rx), end: None }
    }

    /// The page's routes.
    pub fn handle(self: &Arc<Live>, request: &Request) -> Reply {
        let path = request.path.as_str();
        if path == "/" {
            return Reply::ok("text/html; charset=utf-8", PAGE.as_bytes());
        }
        if path == "/events" {
            let after = request.last_event_id.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            let live = self.clone();
            return Reply::Events(Box::new(move |events| live.stream(events, after)));
        }
        if path == "/capture.pcap" {
            let bytes = self.kept();
            return Reply::Body {
                status: Status::Ok,
                kind: "application/vnd.tcpdump.pcap",
                body: bytes.into(),
                download: Some(self.file_name.clone()),
            };
        }
        if let Some(n) = path.strip_prefix("/detail/").and_then(|n| n.parse::<usize>().ok()) {
            return match self.with_frames(|frames| packets::detail(frames, self.port, n)) {
                Ok(Some(text)) => Reply::ok("text/plain; charset=utf-8", text.into_bytes()),
                Ok(None) => {
                    Reply::error(Status::NotFound, format!("frame {n} is not a segment of this capture"))
                }
                Err(why) => Reply::error(Status::NotFound, why),
            };
        }
        if let Some(s) = path.strip_prefix("/flow/").and_then(|s| s.strip_suffix(".svg")) {
            let Ok(wanted) = s.parse::<usize>() else {
                return Reply::error(Status::NotFound, "no such session");
            };
            let drawn = self.with_frames(|frames| {
                packets::sessions(frames, self.port, |seg| seg.followed.session + 1 == wanted)
            });
            return match drawn {
                Ok(sessions) if !sessions.is_empty() => {
                    let refs: Vec<(usize, &flow::Session)> = sessions.iter().map(|(n, s)| (*n, s)).collect();
                    Reply::ok("image/svg+xml", flow::svg(&refs).into_bytes())
                }
                Ok(_) => Reply::error(Status::NotFound, format!("no session {wanted} in this capture")),
                Err(why) => Reply::error(Status::NotFound, why),
            };
        }
        Reply::error(Status::NotFound, format!("nothing at {path}"))
    }

    /// The kept frames as a pcap file.
    fn kept(&self) -> Vec<u8> {
        let mut inner = self.lock();
        inner.pcap.written().cloned().unwrap_or_default()
    }

    /// Runs `f` over the kept frames, read back from the in-memory pcap.
    fn with_frames<T>(&self, f: impl FnOnce(&[Frame<'_>]) -> Result<T, packets::Cut>) -> Result<T, String> {
        let bytes = self.kept();
        let frames = pcap::read(&bytes).map_err(|e| e.to_string())?;
        f(&frames).map_err(|e| e.to_string())
    }

    /// One viewer's event stream: who the page is about, the rows so far, then each as it comes.
    fn stream(&self, events: &mut Events<'_>, after: usize) -> std::io::Result<()> {
        self.streaming.fetch_add(1, Ordering::Relaxed);
        let result = (|| {
            let Subscription { backlog, full, queue, end } = self.subscribe(after);
            events.send(None, Some("info"), &self.info)?;
            for (i, row) in backlog.iter().enumerate() {
                events.send(Some((after + i + 1) as u64), None, row)?;
            }
            if let Some(full) = full {
                events.send(None, Some("full"), &full)?;
            }
            if let Some(end) = end {
                return events.send(None, Some("end"), &end);
            }
            let Some(queue) = queue else { return Ok(()) };
            loop {
                match queue.recv_timeout(KEEP_ALIVE) {
                    Ok(Message::Row(n, row)) => events.send(Some(n), None, &row)?,
                    Ok(Message::Full(full)) => events.send(None, Some("full"), &full)?,
                    Ok(Message::End(end)) => return events.send(None, Some("end"), &end),
                    Err(RecvTimeoutError::Timeout) => events.keep_alive()?,
                    // Dropped for falling behind: the browser reconnects and catches up.
                    Err(RecvTimeoutError::Disconnected) => {
                        return events.send(None, Some("behind"), r#"{"reason":"this view fell behind"}"#);
                    }
                }
            }
        })();
        // A viewer that did not read for the whole write timeout was cut off by it: behind too.
        if let Err(e) = &result {
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                self.lock().dropped_viewers += 1;
            }
        }
        self.streaming.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

/// A row as the page's JSON: the sheet's columns, the session (from 1), the row's colour, and
/// the absolute time on the wire (milliseconds since 1970) for measuring the page's delay.
fn row_json(number: usize, row: &Row, frame: &Frame<'_>, p: &Packet<'_>, f: &Followed) -> String {
    format!(
        r#"{{"n":{number},"t":"{}","w":{:.3},"src":{},"dst":{},"sp":{},"dp":{},"len":{},"s":{},"c":"{}","info":{}}}"#,
        Seconds(row.time_ns),
        frame.time_ns as f64 / 1e6,
        json_string(&row.src),
        json_string(&row.dst),
        p.tcp.src_port,
        p.tcp.dst_port,
        row.length,
        row.session + 1,
        colour(p, f),
        json_string(&row.info),
    )
}

/// Wireshark's default colouring rule that a segment meets first: Bad TCP (analysis flags but a
/// window update or keep-alive), TCP RST, TCP SYN/FIN, else TCP.
fn colour(p: &Packet<'_>, f: &Followed) -> &'static str {
    let bad = f
        .analysis
        .iter()
        .any(|a| !matches!(a, Analysis::WindowUpdate | Analysis::KeepAlive | Analysis::KeepAliveAck));
    if bad {
        "bad"
    } else if p.tcp.flags & flag::RST != 0 {
        "rst"
    } else if p.tcp.flags & (flag::SYN | flag::FIN) != 0 {
        "synfin"
    } else {
        "tcp"
    }
}

fn link_name(link: Link) -> &'static str {
    match link {
        Link::Ethernet => "Ethernet",
        Link::LinuxSll => "Linux cooked v1",
        Link::LinuxSll2 => "Linux cooked v2",
        _ => "other",
    }
}

/// A machine's name as a file name: letters, digits, `-`, `_` and `.` kept.
fn file_safe(name: &str) -> Cow<'_, str> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Cow::Borrowed(name)
    } else {
        Cow::Borrowed("capture")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::decode::decode;
    use crate::packets::tcp::Tracker;

    /// A TCP segment over raw IPv4: from and to (address and port), the numbers (seq, ack),
    /// the flags and the payload.
    fn segment(
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        (seq, ack): (u32, u32),
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let ((src, sp), (dst, dp)) = (from, to);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let total = (20 + 20 + payload.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sp.to_be_bytes());
        tcp.extend_from_slice(&dp.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        [ip, tcp, payload.to_vec()].concat()
    }

    /// The sheet's exchange, pushed into a view as the capture would.
    fn lab() -> Arc<Live> {
        let live = Arc::new(Live::new("mesin1", "any", 45000, Link::Raw, 65535));
        let (c, s) = ([172, 16, 16, 102], [172, 16, 16, 101]);
        let frames = [
            segment((c, 40000), (s, 45000), (100, 0), 0x02, b""),
            segment((s, 45000), (c, 40000), (500, 101), 0x12, b""),
            segment((c, 40000), (s, 45000), (101, 501), 0x10, b""),
            segment((c, 40000), (s, 45000), (101, 501), 0x18, b"TIME\r\n"),
            segment((s, 45000), (c, 40000), (501, 107), 0x18, b"JAM 16:37:26\r\n"),
            segment((c, 40000), (s, 45000), (107, 515), 0x11, b""),
        ];
        let mut tracker = Tracker::new();
        for (i, data) in frames.iter().enumerate() {
            let t = 1_700_000_000_000_000_000 + i as i64 * 1000;
            let frame = Frame { time_ns: t, wire_len: data.len() as u32, link: Link::Raw, data };
            let packet = decode(Link::Raw, data).unwrap().unwrap();
            let followed = tracker.follow(i + 1, &packet);
            let row = Row::new(i + 1, t - 1_700_000_000_000_000_000, &frame, &packet, &followed);
            live.push(&frame, &row, &packet, &followed);
        }
        live
    }

    fn get(live: &Arc<Live>, path: &str) -> (Status, String) {
        let request =
            Request { method: "GET".into(), path: path.into(), query: String::new(), last_event_id: None };
        match live.handle(&request) {
            Reply::Body { status, body, .. } => (status, String::from_utf8_lossy(&body).into_owned()),
            Reply::Events(_) => (Status::Ok, "events".into()),
        }
    }

    #[test]
    fn rows_carry_the_sheets_columns_and_wiresharks_colours() {
        let live = lab();
        let rows = live.lock().rows.clone();
        assert_eq!(rows.len(), 6);
        assert!(rows[0].starts_with(r#"{"n":1,"t":"0.000000","#), "{}", rows[0]);
        assert!(rows[0].contains(r#""src":"172.16.16.102","dst":"172.16.16.101","sp":40000,"dp":45000"#));
        assert!(rows[0].contains(r#""c":"synfin""#) && rows[0].contains("[SYN]"));
        assert!(rows[3].contains(r#""c":"tcp""#) && rows[3].contains("Len=6"), "{}", rows[3]);
        assert!(rows[4].contains(r#""s":1,"#));
    }

    #[test]
    fn the_page_serves_details_diagrams_and_the_capture_as_jam_show_would() {
        let live = lab();
        let (status, detail) = get(&live, "/detail/4");
        assert_eq!(status, Status::Ok);
        assert!(detail.starts_with("Frame 4: 46 bytes on wire"), "{detail}");
        let (status, svg) = get(&live, "/flow/1.svg");
        assert_eq!(status, Status::Ok);
        assert_eq!(svg.matches(r#"class="segment "#).count(), 6, "{svg}");
        assert_eq!(get(&live, "/flow/2.svg").0, Status::NotFound);
        assert_eq!(get(&live, "/detail/9").0, Status::NotFound);
        assert_eq!(get(&live, "/nothing").0, Status::NotFound);
        let bytes = live.kept();
        let frames = pcap::read(&bytes).unwrap();
        assert_eq!(frames.len(), 6);
        assert!(get(&live, "/").1.contains("<title>"));
    }

    #[test]
    fn a_full_page_says_so_once_and_keeps_what_it_has() {
        let live = lab();
        live.lock().max_frames = 4;
        let Subscription { queue, full, .. } = live.subscribe(0);
        assert!(full.is_none(), "six rows were kept before the bound was lowered");
        let data = segment(([10, 0, 0, 2], 1), ([10, 0, 0, 1], 45000), (1, 0), 0x10, b"");
        let packet = decode(Link::Raw, &data).unwrap().unwrap();
        let followed = Tracker::new().follow(1, &packet);
        let frame = Frame { time_ns: 0, wire_len: 40, link: Link::Raw, data: &data };
        let row = Row::new(7, 0, &frame, &packet, &followed);
        live.push(&frame, &row, &packet, &followed);
        live.push(&frame, &row, &packet, &followed);
        let said: Vec<Message> = queue.unwrap().try_iter().collect();
        assert!(matches!(said.as_slice(), [Message::Full(f)] if &**f == r#"{"kept":6}"#), "once, and no row");
        assert_eq!(live.lock().not_kept, 2);
        assert_eq!(pcap::read(&live.kept()).unwrap().len(), 6, "the download holds what was kept");
        assert!(live.subscribe(0).full.is_some(), "a viewer that comes later is told too");
    }

    #[test]
    fn a_viewer_that_falls_behind_is_dropped_and_the_capture_goes_on() {
        let live = lab();
        let Subscription { backlog, queue, .. } = live.subscribe(2);
        assert_eq!(backlog.len(), 4, "rows after the second");
        let queue = queue.unwrap();
        let (c, s) = ([10, 0, 0, 2], [10, 0, 0, 1]);
        let data = segment((c, 1), (s, 45000), (1, 0), 0x10, b"");
        let packet = decode(Link::Raw, &data).unwrap().unwrap();
        let followed = Tracker::new().follow(1, &packet);
        let frame = Frame { time_ns: 0, wire_len: 40, link: Link::Raw, data: &data };
        let row = Row::new(7, 0, &frame, &packet, &followed);
        for _ in 0..VIEWER_QUEUE + 10 {
            live.push(&frame, &row, &packet, &followed);
        }
        assert_eq!(live.dropped_viewers(), 1);
        assert_eq!(live.lock().rows.len(), 6 + VIEWER_QUEUE + 10, "every row is kept all the same");
        assert_eq!(queue.try_iter().count(), VIEWER_QUEUE, "what was queued is still delivered");
        live.end(6, 0);
        let Subscription { queue, end, .. } = live.subscribe(0);
        assert!(queue.is_none() && end.unwrap().contains(r#""captured":6"#));
    }
}
