//! jam: the networking lab's TCP time server, done properly.
//!
//! A client sends `TIME` + CR LF and gets `JAM hh:mm:ss` + CR LF; `QUIT` + CR LF ends the
//! session. One static binary holds the server, the client, a container health probe, a load
//! generator, the lab in one process, the namespace lab's switch and the appliance's init;
//! `docs/PROTOCOL.md` describes the protocol and `README.md` the whole project.
//!
//! # Layout
//! Read bottom-up, each part uses only those above it in its group and the leaves below.
//!
//! The server:
//! - [`protocol`]: the pure protocol core: framing, requests, reply bytes. No I/O, no clock.
//! - [`clock`]: the time zone in force and the time of day in it, looked up once per second;
//!   `tzdb.rs` holds the IANA database it reads, compiled in deflated.
//! - `connection.rs`: the one layer that touches a client's socket: its limits, bounded buffers,
//!   timeouts, backpressure, an orderly close. It knows nothing of the server.
//! - `reactor.rs`: the event loop: readiness for the clients' sockets, registered once and
//!   edge-triggered, so that a request costs no `epoll_ctl`; their deadlines; and the tasks
//!   (each connection is one), run by the same loop.
//! - [`shutdown`]: the stop signal that the server and every connection listen for, and the
//!   signals that set it off.
//! - [`server`]: the accept loop, the connection limit, graceful shutdown, and `jam serve`.
//!
//! The tools:
//! - [`client`]: `jam query` and `jam probe`.
//! - [`check`]: `jam check`, which grades any time server against the lab sheet.
//! - [`talk`]: `jam talk`, raw bytes to any server and what comes back, like `nc -C`.
//! - [`bench`](mod@bench): `jam bench`, the load generator that checks every reply.
//! - [`lab`]: `jam lab`, the three-machine experiment on 127.16.16.x in one process.
//!
//! The machines:
//! - [`wire`]: `jam wire`, the namespace lab's switch with delay, jitter, loss and rate.
//! - [`init`]: `jam init`, PID 1 of the appliance VM: mounts, modules, network, power off.
//!
//! Shared by all, leaves that use nothing above:
//! - [`cli`]: command-line parsing into plain values; `main.rs` only dispatches.
//! - [`settings`]: setting values written as text, for flags and `JAM_…` variables alike.
//! - [`log`]: one line per event on stderr.
//! - `sys.rs`: the Unix calls (signals, limits, sockets, the ioctls), through nix; all of jam's
//!   `unsafe` is there.
//!
//! This crate's error type, [`Error`], carries the exit status; [`print()`] is the one way to
//! standard output.
// Denied everywhere but for the few ioctls in `sys`, each with its reasoning beside it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
mod connection;
pub mod init;
pub mod lab;
pub mod log;
pub mod protocol;
pub mod reactor;
pub mod server;
pub mod settings;
pub mod shutdown;
mod sys;
pub mod talk;
mod tzdb;
pub mod wire;

use std::fmt;
use std::io::Write;

/// The exit status of a command that failed (`jam probe`: unhealthy).
pub const EXIT_FAILURE: u8 = 1;
/// The exit status of a command line that could not be understood.
pub const EXIT_USAGE: u8 = 2;

/// jam's one error type: a message for a person, printed once by `main` after `jam: `, and the
/// exit status that goes with it.
#[derive(Debug)]
pub struct Error {
    message: String,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Something failed: exit 1, message printed.
    Failure,
    /// Something failed and the caller asked for silence (the health probe): exit 1.
    Silent,
    /// The command line was wrong: exit 2, message printed.
    Usage,
    /// Standard output was closed by its reader (`jam query -n 0 | head -1`): a normal end,
    /// exit 0 and nothing printed, as ripgrep does.
    StdoutClosed,
}

impl Error {
    /// A failure: exit status 1.
    pub fn new(message: impl Into<String>) -> Error {
        Error { message: message.into(), kind: Kind::Failure }
    }

    /// A command line that cannot be understood: exit status 2.
    pub fn usage(message: impl Into<String>) -> Error {
        Error { message: message.into(), kind: Kind::Usage }
    }

    /// The same failure, not printed.
    pub fn silent(mut self) -> Error {
        self.kind = Kind::Silent;
        self
    }

    /// The exit status this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Failure | Kind::Silent => EXIT_FAILURE,
            Kind::Usage => EXIT_USAGE,
            Kind::StdoutClosed => 0,
        }
    }

    /// Whether `main` prints the message.
    pub fn printed(&self) -> bool {
        matches!(self.kind, Kind::Failure | Kind::Usage)
    }

    /// Whether this is a usage error (exit status 2).
    pub fn is_usage(&self) -> bool {
        self.kind == Kind::Usage
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Writes `text` to standard output. A reader that has gone away (a closed pipe) is not an error
/// to report but the end of the command: [`Error::exit_code`] is then 0 and nothing is printed.
/// `print!` would panic there instead.
pub fn print(text: &str) -> Result<(), Error> {
    print_bytes(text.as_bytes())
}

/// [`print()`] for bytes that need not be text (what a server sent to `jam talk`).
pub fn print_bytes(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Error { message: "standard output closed".into(), kind: Kind::StdoutClosed }
        } else {
            Error::new(format!("cannot write to standard output: {e}"))
        }
    })
}

/// `println!` through [`print()`]: evaluates to `Result<(), Error>`.
#[macro_export]
macro_rules! outln {
    () => { $crate::print("\n") };
    ($($t:tt)*) => { $crate::print(&(format!($($t)*) + "\n")) };
}
