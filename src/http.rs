//! jam's HTTP side: a small HTTP/1.1 server for its pages, `jam capture --web` (the browser
//! view) and `jam serve --metrics` (Prometheus), held to the same kind of bounds as `jam serve`.
//!
//! - A request's head is parsed by httparse (hyper's parser), never by hand, and may be at most
//!   [`MAX_HEAD`] bytes; it must arrive whole within [`HEAD_TIMEOUT`]. A head that is malformed,
//!   too large, or asks for anything but `GET` or `HEAD` gets a 400 (or 405) and a close.
//! - At most [`MAX_CONNECTIONS`] connections are served at once, each on a thread of its own
//!   with a small stack; one more gets a 503 and a close.
//! - Every write may block for at most [`WRITE_TIMEOUT`]: a client that stops reading is cut off
//!   then, and holds nothing else up.
//! - One request per connection (`Connection: close`): the pages make a handful of requests, and
//!   a connection that ends with its reply cannot be held open idle.
//!
//! Threads and blocking sockets, not the server's reactor: the two users have at most a few
//! dozen clients (browsers, one Prometheus), and a thread each keeps a live stream (server-sent
//! events) plain sequential code. The handler is a pure function of the request, [`Handler`];
//! what it answers is a [`Reply`], written here.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The largest request head read: request line and header lines. A browser's is under 1 KiB.
pub const MAX_HEAD: usize = 8 * 1024;
/// Header lines read, at most.
pub const MAX_HEADERS: usize = 32;
/// Connections served at once; the next one gets a 503.
pub const MAX_CONNECTIONS: usize = 64;
/// The time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one write may wait for a client to read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that has its reply is read from, to its end, before the close: closing
/// with unread bytes would send a reset that can destroy the reply before it is read.
const LINGER: Duration = Duration::from_millis(500);
/// The kernel's send buffer of an event stream: with the handler's own queue, all that is held
/// for a viewer that stops reading (the kernel would otherwise grow it to megabytes).
pub const STREAM_SEND_BUFFER: usize = 64 * 1024;
/// Each connection's thread's stack: it parses one head and writes one reply.
const THREAD_STACK: usize = 128 * 1024;

/// A request, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path, from `/`, without the query.
    pub path: String,
    /// What follows `?`, if anything.
    pub query: String,
    /// The `Last-Event-ID` header of an event stream that reconnects.
    pub last_event_id: Option<String>,
}

/// What a head parsed so far amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Partial,
    /// A whole request.
    Done(Request),
    /// A request to refuse, with the status and the reason.
    Bad(Status, &'static str),
}

/// Parses a request head from the bytes read so far.
pub fn parse_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => {
            Head::Bad(Status::BadRequest, "the request head is too large")
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Head::Bad(Status::BadRequest, "no request line");
            };
            if method != "GET" && method != "HEAD" {
                return Head::Bad(Status::MethodNotAllowed, "only GET and HEAD are served");
            }
            if !target.starts_with('/') {
                return Head::Bad(Status::BadRequest, "the target is not a path");
            }
            let mut has_body = false;
            let mut last_event_id = None;
            for h in request.headers.iter() {
                if h.name.eq_ignore_ascii_case("transfer-encoding")
                    || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                {
                    has_body = true;
                }
                if h.name.eq_ignore_ascii_case("last-event-id") {
                    last_event_id = std::str::from_utf8(h.value).ok().map(str::to_string);
                }
            }
            if has_body {
                return Head::Bad(Status::BadRequest, "a GET has no body");
            }
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            Head::Done(Request {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                last_event_id,
            })
        }
        Err(httparse::Error::TooManyHeaders) => Head::Bad(Status::BadRequest, "too many header lines"),
        Err(_) => Head::Bad(Status::BadRequest, "not an HTTP request"),
    }
}

/// The statuses jam answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: the request cannot be understood.
    BadRequest,
    /// 404.
    NotFound,
    /// 405: not `GET` or `HEAD`.
    MethodNotAllowed,
    /// 503: every place is taken.
    Unavailable,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::Unavailable => "503 Service Unavailable",
        }
    }
}

/// An event stream's writer, handed to [`Reply::Events`]' function once the head is sent.
pub struct Events<'a> {
    stream: &'a mut TcpStream,
}

impl Events<'_> {
    /// Sends one event: `data` (one line of text), with an `id` the browser sends back as
    /// `Last-Event-ID` when it reconnects, and a name (`message` when none).
    pub fn send(&mut self, id: Option<u64>, name: Option<&str>, data: &str) -> io::Result<()> {
        let mut out = String::with_capacity(data.len() + 32);
        if let Some(id) = id {
            out.push_str(&format!("id: {id}\n"));
        }
        if let Some(name) = name {
            out.push_str(&format!("event: {name}\n"));
        }
        for line in data.lines() {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        self.stream.write_all(out.as_bytes())
    }

    /// Sends a comment, which the browser ignores: it finds a viewer that has gone.
    pub fn keep_alive(&mut self) -> io::Result<()> {
        self.stream.write_all(b":\n\n")
    }
}

/// A live stream's body: it writes events until it returns.
pub type Stream = Box<dyn FnOnce(&mut Events<'_>) -> io::Result<()> + Send>;

/// What a handler answers.
pub enum Reply {
    /// A whole body.
    Body {
        /// The status.
        status: Status,
        /// Its `Content-Type`.
        kind: &'static str,
        /// The bytes.
        body: Cow<'static, [u8]>,
        /// Offered for download under this file name (`Content-Disposition: attachment`).
        download: Option<String>,
    },
    /// A stream of server-sent events (`text/event-stream`).
    Events(Stream),
}

impl Reply {
    /// A 200 with this body.
    pub fn ok(kind: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Reply {
        Reply::Body { status: Status::Ok, kind, body: body.into(), download: None }
    }

    /// A plain-text error page.
    pub fn error(status: Status, why: impl Into<String>) -> Reply {
        let mut text = why.into();
        text.push('\n');
        Reply::Body {
            status,
            kind: "text/plain; charset=utf-8",
            body: text.into_bytes().into(),
            download: None,
        }
    }
}

/// What answers requests: the page's routes.
pub type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// Serves `handler` on `listener`, from a thread of its own, for the life of the process. The
/// name is the thread's and the log's.
pub fn serve(listener: TcpListener, name: &'static str, handler: Arc<Handler>) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name(name.into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else {
                // EMFILE and the like: wait a moment rather than spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ =
                    respond(&mut stream, "GET", Reply::error(Status::Unavailable, "too many connections"));
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let guard = Open(open.clone());
            let handler = handler.clone();
            let spawned =
                std::thread::Builder::new().name(name.into()).stack_size(THREAD_STACK).spawn(move || {
                    let _guard = guard;
                    connection(stream, &*handler);
                });
            if let Err(e) = spawned {
                crate::warn!("{name}: cannot start a thread for a connection: {e}");
            }
        }
    })?;
    Ok(())
}

/// Counts a connection as open until it is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection: its head, its reply, its close.
fn connection(mut stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let request = match read_head(&mut stream) {
        Ok(Head::Done(request)) => request,
        Ok(Head::Bad(status, why)) => {
            let _ = respond(&mut stream, "GET", Reply::error(status, why));
            return close(stream);
        }
        // A client that went away, or never finished its head in time: nothing to answer.
        Ok(Head::Partial) | Err(_) => return,
    };
    let reply = handler(&request);
    let _ = respond(&mut stream, &request.method, reply);
    close(stream);
}

/// Reads until a whole head, a bad one, the end, or the head's deadline.
fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::Partial);
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(Head::Partial);
        }
        len += n;
        match parse_head(&buf[..len]) {
            Head::Partial => continue,
            done => return Ok(done),
        }
    }
}

/// Writes the reply (only its head for `HEAD`).
fn respond(stream: &mut TcpStream, method: &str, reply: Reply) -> io::Result<()> {
    const COMMON: &str =
        "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
    match reply {
        Reply::Body { status, kind, body, download } => {
            let mut head = format!(
                "HTTP/1.1 {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{COMMON}",
                status.line(),
                body.len()
            );
            if let Some(name) = download {
                head.push_str(&format!("Content-Disposition: attachment; filename=\"{name}\"\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            if method != "HEAD" {
                stream.write_all(&body)?;
            }
            Ok(())
        }
        Reply::Events(body) => {
            let _ = nix::sys::socket::setsockopt(
                &*stream,
                nix::sys::socket::sockopt::SndBuf,
                &STREAM_SEND_BUFFER,
            );
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{COMMON}\r\n");
            stream.write_all(head.as_bytes())?;
            if method == "HEAD" {
                return Ok(());
            }
            body(&mut Events { stream })
        }
    }
}

/// Ends the connection gracefully: the reply's FIN, then what the client still sends is read
/// and dropped, briefly, so that the close sends no reset over an unread reply.
fn close(mut stream: TcpStream) {
    let _ = stream.shutdown(Direction::Write);
    let _ = stream.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// The address a page listens on: `PORT` alone is on loopback (127.0.0.1), since a page is for
/// the person at this machine unless they say otherwise: `0.0.0.0:PORT` for everyone.
pub fn page_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("{s:?} is not an address such as 127.0.0.1:50001, 0.0.0.0:50001 or 50001"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(bytes: &[u8]) -> Request {
        match parse_head(bytes) {
            Head::Done(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_browsers_request_is_read() {
        let r = done(b"GET /flow/2.svg?x=1 HTTP/1.1\r\nHost: 127.0.0.1:50001\r\nLast-Event-ID: 41\r\n\r\n");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.query.as_str()), ("GET", "/flow/2.svg", "x=1"));
        assert_eq!(r.last_event_id.as_deref(), Some("41"));
        assert_eq!(done(b"HEAD / HTTP/1.0\r\n\r\n").path, "/");
    }

    #[test]
    fn a_head_in_pieces_waits_for_the_rest() {
        assert_eq!(parse_head(b"GET / HT"), Head::Partial);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let bad = |b: &[u8]| match parse_head(b) {
            Head::Bad(status, _) => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(b"TIME\r\n\r\n"), Status::BadRequest);
        assert_eq!(bad(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Status::BadRequest);
        assert_eq!(bad(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), Status::MethodNotAllowed);
        assert_eq!(bad(b"GET http://x/ HTTP/1.1\r\n\r\n"), Status::BadRequest);
        assert_eq!(bad(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"), Status::BadRequest);
        let long = [b"GET /".as_slice(), &[b'a'; MAX_HEAD]].concat();
        assert_eq!(bad(&long), Status::BadRequest);
        let many: Vec<u8> =
            [b"GET / HTTP/1.1\r\n".to_vec(), b"A: b\r\n".repeat(MAX_HEADERS + 1), b"\r\n".to_vec()].concat();
        assert_eq!(bad(&many), Status::BadRequest);
    }

    #[test]
    fn a_page_listens_on_loopback_unless_told() {
        assert_eq!(page_addr("50001").unwrap(), "127.0.0.1:50001".parse().unwrap());
        assert_eq!(page_addr("0.0.0.0:50001").unwrap(), "0.0.0.0:50001".parse().unwrap());
        assert!(page_addr("mesin1:50001").is_err());
    }
}
