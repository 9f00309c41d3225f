//! jam: the networking lab's TCP time server, done properly.
//!
//! A client sends `TIME` + CR LF and gets `JAM hh:mm:ss` + CR LF; `QUIT` + CR LF ends the
//! session. One static binary holds the server, the client, a container health probe, a load
//! generator, the lab in one process, the namespace lab's switch and the appliance's init;
//! `docs/PROTOCOL.md` describes the protocol and `README.md` the whole project.
//!
//! # Layout
//! - [`protocol`]: the pure protocol core: framing, requests, reply bytes. No I/O, no clock.
//! - [`clock`]: the time zone in force and the time of day in it, looked up once per second.
//! - [`tzdb`]: the IANA time zone database, compiled in deflated.
//! - [`connection`]: the one layer that touches a client's socket: bounded buffers, timeouts,
//!   backpressure, an orderly close.
//! - [`server`]: the accept loop, the connection limit, graceful shutdown, and `jam serve`.
//! - [`shutdown`]: the stop signal that the server and every connection listen for.
//! - [`client`]: `jam query` and `jam probe`.
//! - [`bench`](mod@bench): `jam bench`, the load generator that checks every reply.
//! - [`lab`]: `jam lab`, the three-machine experiment on 127.16.16.x in one process.
//! - [`wire`]: `jam wire`, the namespace lab's switch with delay, jitter, loss and rate.
//! - [`init`]: `jam init`, PID 1 of the appliance VM: mounts, modules, network, power off.
//! - [`sys`]: the Unix calls (signals, limits, sockets, the ioctls), through nix.
//! - [`log`]: one line per event on stderr.
//! - [`cli`]: command-line parsing into plain values; `main.rs` only dispatches.
// Denied everywhere but for the few ioctls in `sys`, each with its reasoning beside it.
#![deny(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod connection;
pub mod init;
pub mod lab;
pub mod log;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod sys;
pub mod tzdb;
pub mod wire;

use std::fmt;

/// jam's one error type: a message for a person, printed once by `main` after `jam: `.
#[derive(Debug)]
pub struct Error {
    message: String,
    /// Whether `main` prints the message; the health probe is silent unless asked.
    pub print: bool,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error { message: message.into(), print: true }
    }

    /// The same error, not printed.
    pub fn silent(mut self) -> Error {
        self.print = false;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
