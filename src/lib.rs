//! jam: the networking lab's TCP time server, done properly.
//!
//! A client sends `TIME` + CR LF and gets `JAM hh:mm:ss` + CR LF; `QUIT` + CR LF ends the
//! session. One static binary holds the server, the client, a container health probe, a load
//! generator, the lab in one process, the namespace lab's switch and the appliance's init;
//! `docs/PROTOCOL.md` describes the protocol and `README.md` the whole project.
//!
//! # Layout
//! The tree is the architecture: a folder for each group, a file for each role.
//!
//! - [`server`]: the time server, read bottom-up: [`server::protocol`] (the pure core: framing,
//!   requests, reply bytes; no I/O, no clock), [`server::clock`] (the zone in force and the time
//!   of day in it), `connection.rs` (the one layer that touches a client's socket),
//!   [`server::reactor`] (the event loop: readiness, deadlines, the tasks), [`server::shutdown`]
//!   (the stop signal and the signals that set it off), and [`server`] itself (the accept loop,
//!   the limits, graceful shutdown). [`server::config`] is `jam serve`'s command line, and
//!   [`server::metrics`] what it counts for `jam serve --metrics`.
//! - [`tools`]: the commands a person runs against a server: [`tools::client`] (`jam query`,
//!   `jam probe`), [`tools::check`] (`jam check`, the grader), [`tools::grade`] (`jam grade`, a
//!   class in sandboxes), [`tools::talk`] (`jam talk`, like
//!   `nc -C`), [`tools::bench`](mod@tools::bench) (`jam bench`, the load generator) and
//!   [`tools::lab`] (`jam lab`, the three machines on 127.16.16.x), [`tools::show`] (`jam show`,
//!   a capture in the sheet's columns) and [`tools::capture`] (`jam capture`, and its page in a
//!   browser, [`tools::capture::web`]).
//! - [`packets`]: captures read and written, and shown as the course's Wireshark shows them:
//!   [`packets::pcap`] (pcap and pcapng), [`packets::decode`] (link, IP and TCP headers),
//!   [`packets::tcp`] (sessions followed: relative numbers, analysis), [`packets::table`] (the
//!   sheet's columns and a frame's detail), [`packets::flow`] (sequence diagrams). A pure core:
//!   no sockets, no clock.
//! - [`machines`]: what the labs' machines are made of: [`machines::wire`] (the namespace lab's
//!   switch) and [`machines::init`] (PID 1 of the appliance VM).
//! - Leaves that every group uses: [`settings`] (setting values and flags written as text, for
//!   flags and `JAM_…` variables alike), [`log`] (one line per event on stderr), [`http`] (the
//!   small bounded HTTP server of jam's pages: `jam capture --web`, `jam serve --metrics`) and
//!   `sys.rs` (the Unix calls, through nix; all of jam's `unsafe` is there).
//! - [`cli`]: the top: the table of commands, `jam --help`, and the dispatch; `main.rs` calls it.
//!
//! A command lives in one room: its arguments, help text and parser beside the code that runs
//! it (`jam serve`'s in [`server::config`], `jam check`'s in [`tools::check`], ...). Adding a
//! command touches its room and one row of [`cli`]'s table.
//!
//! Dependencies point one way, and a test (`tests/jam/layout.rs`) holds them there:
//! - the server knows nothing of the tools, the machines or the command table;
//! - the packets know nothing of the server, the tools or the machines;
//! - the tools and the machines use the server (its protocol, clock, shutdown), never each
//!   other across groups;
//! - the leaves (`settings`, `log`, `http`, `sys`) use nothing above them but the protocol's
//!   limits;
//! - only [`cli`] knows every room.
//!
//! This crate's error type, [`Error`], carries the exit status; [`print()`] is the one way to
//! standard output.
// Denied everywhere but for the few ioctls in `sys`, each with its reasoning beside it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod http;
pub mod log;
pub mod machines;
pub mod packets;
pub mod server;
pub mod settings;
mod sys;
pub mod tools;

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

/// `s` as a JSON string, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
