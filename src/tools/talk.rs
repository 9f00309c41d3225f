//! `jam talk`: raw bytes to any server and whatever comes back, like `nc -C`, from a lab machine
//! that has no nc (the compose lab's scratch images).
//!
//! Interactive, each line typed is sent with CR LF and replies are printed as they arrive; end
//! of input (Ctrl-D) half-closes the connection and waits for the server to close. With `--send`,
//! the bytes given (with printf's escapes, as the sheet's `printf "TIME\r\n" | nc` payloads are
//! written) are sent at once, and everything the server sends is printed until it closes or
//! has been silent for the time limit. `--show-bytes` prints what came back with its control
//! characters made visible, so that the CR LF rules can be seen.
//!
//! Plain blocking sockets and two threads: one reads the terminal, the other the connection.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown as Direction, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use lexopt::prelude::*;

use crate::server::protocol::escape;
use crate::settings::{self, Parsed, positional, show, usage, value};
use crate::tools::client::Target;
use crate::{Error, outln};

/// How long `jam talk` waits for the server: to connect, and after the last byte it sent once
/// there is nothing more to send.
pub const DEFAULT_TALK_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of `jam talk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TalkArgs {
    /// The server to talk to.
    pub target: Target,
    /// Bytes to send at once instead of reading lines from standard input.
    pub send: Option<Vec<u8>>,
    /// Print what comes back escaped (`JAM 16:37:26\r\n`).
    pub show_bytes: bool,
    /// How long to wait for a connection, and for more after input has ended.
    pub timeout: Duration,
}

impl Default for TalkArgs {
    fn default() -> TalkArgs {
        TalkArgs { target: Target::default(), send: None, show_bytes: false, timeout: DEFAULT_TALK_TIMEOUT }
    }
}

/// `jam talk`.
pub fn run(args: &TalkArgs) -> Result<(), Error> {
    let target = &args.target;
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::new(format!("cannot resolve {target}")))?;
    let stream = TcpStream::connect_timeout(&addr, args.timeout).map_err(|e| {
        Error::new(match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!("cannot connect to {target}: no answer within {}", show(args.timeout))
            }
            _ => format!("cannot connect to {target}: {e}"),
        })
    })?;
    // As `nc -v` says it: step 1.a of the sheet asks whether the connection is made at all, and
    // an interactive session shows nothing else until the server speaks.
    eprintln!("connected to {addr}");
    let _ = stream.set_nodelay(true);
    let writer = stream.try_clone().map_err(|e| Error::new(format!("cannot use the connection: {e}")))?;
    match &args.send {
        Some(bytes) => {
            let mut w = &writer;
            w.write_all(bytes).map_err(|e| Error::new(format!("cannot send to {target}: {e}")))?;
            // What was given is all there is: from now on, the time limit runs.
            stream.set_read_timeout(Some(args.timeout)).ok();
        }
        None => {
            let timeout = args.timeout;
            let reader =
                stream.try_clone().map_err(|e| Error::new(format!("cannot use the connection: {e}")))?;
            thread::Builder::new()
                .name("jam-talk-input".into())
                .spawn(move || type_lines(&writer, &reader, timeout))
                .map_err(|e| Error::new(format!("cannot start the input thread: {e}")))?;
        }
    }
    print_replies(&stream, args)
}

/// Sends each line of standard input with CR LF; at its end, half-closes and starts the time
/// limit on the server's close.
fn type_lines(writer: &TcpStream, reader: &TcpStream, timeout: Duration) {
    let stdin = io::stdin();
    let mut line = String::new();
    let mut w = writer;
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = line.trim_end_matches(['\r', '\n']);
                if w.write_all(format!("{text}\r\n").as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
    let _ = reader.set_read_timeout(Some(timeout));
    let _ = writer.shutdown(Direction::Write);
}

/// Prints what the server sends until it closes, or goes quiet for the time limit once there is
/// nothing more to send.
fn print_replies(stream: &TcpStream, args: &TalkArgs) -> Result<(), Error> {
    let target = &args.target;
    let mut buf = [0u8; 4096];
    let mut r = stream;
    let mut at_line_start = true;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let got = &buf[..n];
                at_line_start = got.ends_with(b"\n");
                if args.show_bytes {
                    // One escaped line per line received, so a reply reads as it came.
                    let text: String = got
                        .split_inclusive(|&b| b == b'\n')
                        .map(|piece| escape(piece) + if piece.ends_with(b"\n") { "\n" } else { "" })
                        .collect();
                    crate::print(&text)?;
                } else {
                    crate::print_bytes(got)?;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if !at_line_start {
                    outln!()?;
                }
                eprintln!("jam: {target} did not close within {}; ending", show(args.timeout));
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(Error::new(format!("{target} reset the connection")));
            }
            Err(e) => return Err(Error::new(format!("reading from {target}: {e}"))),
        }
    }
    if args.show_bytes && !at_line_start {
        outln!()?;
    }
    Ok(())
}

// The command line: arguments, help and parser.

/// `jam talk --help`.
pub fn help() -> String {
    let d = TalkArgs::default();
    format!(
        "jam talk: raw bytes to a server, and what comes back: nc -C for the lab's machines

Usage: jam talk [OPTIONS] HOST[:PORT]

Interactive: each line typed is sent with CR LF, and replies are printed as they arrive.
Ctrl-D half-closes the connection and waits for the server to close; Ctrl-C ends at once.
With --send, the bytes given are sent at once and everything the server sends is printed
until it closes, or has sent nothing for the timeout. Exits 0 then; 1 if the connection is
refused or reset.

Arguments:
  HOST[:PORT]             server to talk to; the port defaults to {port}

Options:
  -s, --send BYTES        send these bytes, with printf's escapes: \\r \\n \\t \\\\ \\\" \\xHH
                          (jam talk 172.16.16.101 --send 'TIME\\r\\nQUIT\\r\\n')
  -b, --show-bytes        print what comes back with CR, LF and other controls made
                          visible: JAM 16:37:26\\r\\n
  -t, --timeout DUR       limit on connecting, and on waiting once input has ended
                          [default: {timeout}]
  -h, --help              print this help
",
        port = crate::server::protocol::DEFAULT_PORT,
        timeout = show(d.timeout),
    )
}

/// Parses `jam talk`'s arguments.
pub fn parse(p: &mut lexopt::Parser) -> Result<Parsed<TalkArgs>, Error> {
    let mut args = TalkArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('s') | Long("send") => {
                args.send = Some(value(p, "--send", crate::server::protocol::unescape)?)
            }
            Short('b') | Long("show-bytes") => args.show_bytes = true,
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Value(v) => positional(&mut server, v, Target::parse)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.ok_or_else(|| Error::usage("jam talk needs a server: jam talk HOST[:PORT]"))?;
    Ok(Parsed::Run(args))
}
