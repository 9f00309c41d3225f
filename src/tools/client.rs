//! `jam query` and `jam probe`: the lab's client, without nc.
//!
//! A [`Session`] connects, sends `TIME` + CR LF, checks that the reply is a `JAM hh:mm:ss` line,
//! and ends with `QUIT` + CR LF, waiting for the server to close so that the connection ends
//! with the orderly FIN exchange the lab's capture shows. Every step has a deadline.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use lexopt::prelude::*;
use smol::{Async, Timer};

use crate::server::protocol::{self, DEFAULT_PORT};
use crate::server::shutdown::Shutdown;
use crate::settings::{self, Parsed, positional, show, usage, value};
use crate::{Error, outln, sys};

/// How long `jam query` waits for each step (connect, reply, close).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `jam probe` waits for the whole exchange; Docker's health checks run every few
/// seconds, so a probe must answer well within that.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply line longer than this is not a jam reply.
const MAX_REPLY: usize = 256;

/// A server to talk to: a host name or address and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A name or an address (an IPv6 one without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `HOST`, `HOST:PORT`, `IPv4`, `IPv4:PORT`, `IPv6` or `[IPv6]:PORT`; the port
    /// defaults to 45000.
    pub fn parse(s: &str) -> Result<Target, Error> {
        let bad = || Error::new(format!("invalid server address {s:?}: expected HOST or HOST:PORT"));
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target { host: ip.to_string(), port: DEFAULT_PORT });
        }
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
                }
            }
            None => match s.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            },
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
            None => DEFAULT_PORT,
        };
        // A colon belongs only in a bracketed IPv6 address: `a:b:80` is neither a name nor one.
        let bracketed = s.starts_with('[');
        if host.is_empty() || host.contains(['/', ' ', '[', ']']) || (!bracketed && host.contains(':')) {
            return Err(bad());
        }
        Ok(Target { host: host.to_string(), port })
    }
}

impl Default for Target {
    fn default() -> Target {
        Target { host: "127.0.0.1".into(), port: DEFAULT_PORT }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Runs `fut`, or fails with "no answer from TARGET within T" once `limit` has passed.
async fn deadline<T>(
    limit: Duration,
    target: &Target,
    what: &str,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    future::or(fut, async {
        Timer::after(limit).await;
        Err(Error::new(format!("{what} {target}: no answer within {}", settings::show(limit))))
    })
    .await
}

/// One connection to a jam server.
pub struct Session {
    stream: TcpStream,
    target: Target,
    timeout: Duration,
    buf: Vec<u8>,
}

impl Session {
    /// Connects to `target`, resolving its name if it has one.
    pub async fn connect(target: &Target, timeout: Duration) -> Result<Session, Error> {
        Session::connect_from(None, target, timeout).await
    }

    /// Connects to `target` from the local address `source`, if one is given.
    pub async fn connect_from(
        source: Option<IpAddr>,
        target: &Target,
        timeout: Duration,
    ) -> Result<Session, Error> {
        let connect = async {
            let stream = match source {
                None => TcpStream::connect((target.host.as_str(), target.port)).await,
                Some(source) => connect_from(source, target).await,
            };
            stream.map_err(|e| {
                let hint = match e.kind() {
                    // Any server: jam's, or a student's that crashed or listens on 127.0.0.1 only.
                    io::ErrorKind::ConnectionRefused => {
                        " (is a server running there, listening on that address and not only on its own 127.0.0.1?)"
                    }
                    // A lab machine whose server exited is gone, address and all.
                    io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                        " (is that machine up, with a server running there?)"
                    }
                    _ => "",
                };
                Error::new(format!("cannot connect to {target}: {e}{hint}"))
            })
        };
        let stream = deadline(timeout, target, "cannot connect to", connect).await?;
        let _ = stream.set_nodelay(true);
        Ok(Session { stream, target: target.clone(), timeout, buf: Vec::new() })
    }

    /// Asks for the time and returns the reply line, checked, without its CR LF.
    pub async fn time(&mut self) -> Result<String, Error> {
        let timeout = self.timeout;
        let target = self.target.clone();
        deadline(timeout, &target, "no reply from", async {
            self.send(b"TIME\r\n").await?;
            let line = self.read_line().await?;
            if protocol::parse_time_reply(&line).is_some() {
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            let text = String::from_utf8_lossy(&line);
            Err(Error::new(if text.starts_with("ERROR ") {
                format!("{target} answered with an error: {text}")
            } else {
                format!("{target} sent something that is not a jam reply: {text:?}")
            }))
        })
        .await
    }

    /// Sends `QUIT` and waits for the server to close the connection.
    pub async fn quit(mut self) -> Result<(), Error> {
        let timeout = self.timeout;
        let target = self.target.clone();
        deadline(timeout, &target, "no close from", async {
            self.send(b"QUIT\r\n").await?;
            let mut sink = [0u8; 64];
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(self.io_error("reading from", e)),
                }
            }
        })
        .await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await.map_err(|e| self.io_error("sending to", e))
    }

    /// Reads up to CR LF; returns the line without it.
    async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_REPLY {
                let text = String::from_utf8_lossy(&self.buf[..MAX_REPLY]).into_owned();
                return Err(Error::new(format!(
                    "{} sent something that is not a jam reply: {text:?}...",
                    self.target
                )));
            }
            let mut chunk = [0u8; 128];
            let n = self.stream.read(&mut chunk).await.map_err(|e| self.io_error("reading from", e))?;
            if n == 0 {
                return Err(Error::new(format!("{} closed the connection without a reply", self.target)));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn io_error(&self, what: &str, e: io::Error) -> Error {
        Error::new(format!("{what} {}: {e}", self.target))
    }
}

/// Connects from `source` (port chosen by the kernel) to a target that is an address.
async fn connect_from(source: IpAddr, target: &Target) -> io::Result<TcpStream> {
    let ip: IpAddr = target.host.parse().map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, "a source address needs the server's address, not a name")
    })?;
    connect_bound(source, SocketAddr::new(ip, target.port)).await
}

/// Connects from `source` (port chosen by the kernel) to `target`.
pub(crate) async fn connect_bound(source: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = sys::connect_from(SocketAddr::new(source, 0), target)?;
    let stream = Async::new(socket)?;
    stream.writable().await?;
    if let Some(e) = stream.get_ref().take_error()? {
        return Err(e);
    }
    Ok(TcpStream::from(stream))
}

/// Settings of `jam query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryArgs {
    /// The server to ask.
    pub target: Target,
    /// Requests to send; 0 for until stopped.
    pub count: u64,
    /// The pause between requests.
    pub interval: Duration,
    /// The limit on each step: connect, reply, close.
    pub timeout: Duration,
    /// A fresh connection per request (connect, TIME, QUIT), as the lab's nc clients do.
    pub reconnect: bool,
}

impl Default for QueryArgs {
    fn default() -> QueryArgs {
        QueryArgs {
            target: Target::default(),
            count: 1,
            interval: Duration::from_secs(1),
            timeout: DEFAULT_QUERY_TIMEOUT,
            reconnect: false,
        }
    }
}

/// `jam query`: prints one reply line per request. SIGTERM or SIGINT ends it cleanly, with QUIT
/// sent, which matters when it runs as PID 1 in a client container, where nobody else would.
pub fn query(args: &QueryArgs) -> Result<(), Error> {
    let stop = Shutdown::new();
    if args.count != 1 {
        stop.on_signals("jam-query-signals")?;
    }
    // Until stopped, a client outlives a server that restarts or moves: a failed session is
    // reported and the next one starts on a fresh connection (resolving the name again).
    let keep_going = args.count == 0;
    smol::block_on(async {
        let mut session: Option<Session> = None;
        let mut sent = 0;
        while args.count == 0 || sent < args.count {
            if sent > 0 && stopped_during(args.interval, &stop).await {
                break;
            }
            sent += 1;
            let step = async {
                let mut current = match session.take() {
                    Some(current) => current,
                    None => Session::connect(&args.target, args.timeout).await?,
                };
                let line = current.time().await?;
                outln!("{line}")?;
                if args.reconnect {
                    current.quit().await?;
                } else {
                    session = Some(current);
                }
                Ok::<(), Error>(())
            };
            match step.await {
                Ok(()) => {}
                Err(e) if keep_going && e.printed() => eprintln!("jam: {e} (trying again)"),
                Err(e) => return Err(e),
            }
        }
        match session {
            Some(session) => session.quit().await,
            None => Ok(()),
        }
    })
}

/// Sleeps for `pause`; returns true if `stop` was triggered first.
async fn stopped_during(pause: Duration, stop: &Shutdown) -> bool {
    future::or(
        async {
            Timer::after(pause).await;
            false
        },
        async {
            stop.wait().await;
            true
        },
    )
    .await
}

/// Settings of `jam probe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeArgs {
    /// The server to check.
    pub target: Target,
    /// The limit on the whole check.
    pub timeout: Duration,
    /// Say what was found, healthy or not.
    pub verbose: bool,
}

impl Default for ProbeArgs {
    fn default() -> ProbeArgs {
        ProbeArgs { target: Target::default(), timeout: DEFAULT_PROBE_TIMEOUT, verbose: false }
    }
}

/// `jam probe`: succeeds when a jam reply arrives within the deadline. Silent unless verbose.
pub fn probe(args: &ProbeArgs) -> Result<(), Error> {
    let result = smol::block_on(deadline(args.timeout, &args.target, "no reply from", async {
        let mut session = Session::connect(&args.target, args.timeout).await?;
        let line = session.time().await?;
        // The reply is what counts; a slow close does not make the server unhealthy.
        let _ = session.quit().await;
        Ok(line)
    }));
    match result {
        Ok(line) => {
            if args.verbose {
                outln!("healthy: {} answered {line}", args.target)?;
            }
            Ok(())
        }
        Err(e) if args.verbose => Err(Error::new(format!("unhealthy: {e}"))),
        Err(e) => Err(e.silent()),
    }
}

// The command line: arguments, help and parser.

/// `jam query --help`.
pub fn query_help() -> String {
    let d = QueryArgs::default();
    format!(
        "jam query: ask a server for the time

Usage: jam query [OPTIONS] [HOST[:PORT]]

Connects, sends TIME + CR LF, prints the JAM reply line, sends QUIT + CR LF and waits for the
server to close. Exits 1 with a one-line error if the connection is refused, a step times out,
or the reply is not a JAM line. SIGTERM or SIGINT ends a repeating query cleanly, exit 0.

Arguments:
  [HOST[:PORT]]           server to ask; a name, IPv4 or [IPv6] address [default: {target}]

Options:
  -n, --count N           requests to send; 0 for until SIGTERM or SIGINT, carrying on
                          after a failed request (reported) with a new connection [default: {count}]
  -i, --interval DUR      pause between requests [default: {interval}]
  -r, --reconnect         a new connection for each request (connect, TIME, QUIT), as the
                          lab's nc clients do; without it, all requests share one connection
  -t, --timeout DUR       limit on each step: connect, reply, close [default: {timeout}]
  -h, --help              print this help
",
        target = d.target,
        count = d.count,
        interval = show(d.interval),
        timeout = show(d.timeout),
    )
}

/// Parses `jam query`'s arguments.
pub fn parse_query(p: &mut lexopt::Parser) -> Result<Parsed<QueryArgs>, Error> {
    let mut args = QueryArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('n') | Long("count") => args.count = value(p, "--count", settings::whole)?,
            Short('r') | Long("reconnect") => args.reconnect = true,
            Short('i') | Long("interval") => {
                args.interval = value(p, "--interval", settings::duration_or_zero)?
            }
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => positional(&mut server, v, Target::parse)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Parsed::Run(args))
}

/// `jam probe --help`.
pub fn probe_help() -> String {
    let d = ProbeArgs::default();
    format!(
        "jam probe: health check for a container or orchestrator

Usage: jam probe [OPTIONS] [HOST[:PORT]]

Exits 0 if a JAM reply arrives within the timeout, 1 otherwise. Prints nothing unless -v.
Meant for HEALTHCHECK [\"/jam\", \"probe\"] in an image with no shell.

Arguments:
  [HOST[:PORT]]           server to check [default: {target}]

Options:
  -t, --timeout DUR       limit on the whole check [default: {timeout}]
  -v, --verbose           say what was found, healthy or not
  -h, --help              print this help
",
        target = d.target,
        timeout = show(d.timeout),
    )
}

/// Parses `jam probe`'s arguments.
pub fn parse_probe(p: &mut lexopt::Parser) -> Result<Parsed<ProbeArgs>, Error> {
    let mut args = ProbeArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Short('v') | Long("verbose") => args.verbose = true,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => positional(&mut server, v, Target::parse)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16) -> Target {
        Target { host: host.into(), port }
    }

    #[test]
    fn targets_parse_with_and_without_port() {
        assert_eq!(Target::parse("mesin1").unwrap(), t("mesin1", 45000));
        assert_eq!(Target::parse("mesin1:1234").unwrap(), t("mesin1", 1234));
        assert_eq!(Target::parse("172.16.16.101").unwrap(), t("172.16.16.101", 45000));
        assert_eq!(Target::parse("127.0.0.1:9").unwrap(), t("127.0.0.1", 9));
        assert_eq!(Target::parse("::1").unwrap(), t("::1", 45000));
        assert_eq!(Target::parse("[::1]").unwrap(), t("::1", 45000));
        assert_eq!(Target::parse("[::1]:7").unwrap(), t("::1", 7));
        assert_eq!(Target::parse("[::1]:7").unwrap().to_string(), "[::1]:7");
    }

    #[test]
    fn bad_targets_are_rejected() {
        // "JAM$16:37:54" was found by the fuzzer: it printed as "[JAM$16:37]:54", which did not parse.
        for bad in [
            "",
            ":45000",
            "host:",
            "host:0",
            "host:70000",
            "[::1",
            "[nope]:1",
            "a b",
            "JAM$16:37:54",
            "a:b:80",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
