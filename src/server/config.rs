//! `jam serve`'s command line: its settings, their defaults, the `JAM_…` variables and flags
//! that change them, and its help.
//!
//! Precedence: a flag, then its `JAM_…` variable, then the default. The appliance's init has no
//! flags and reads only the variables ([`Config::from_env`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use lexopt::prelude::*;

use crate::log::Level;
use crate::server::protocol::DEFAULT_PORT;
use crate::server::{DEFAULT_BACKLOG, DEFAULT_THREADS, Limits};
use crate::settings::{self, Env, Parsed, env_override, show, text, usage, value};
use crate::{Error, http};

/// The address `jam serve` listens on unless told otherwise: the lab's port on every IPv4
/// address.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT));

/// Settings of `jam serve`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The address and port to listen on.
    pub listen: SocketAddr,
    /// `--tz`, else `TZ` (resolved to a [`Zone`](crate::server::clock::Zone) at start, so a bad name fails early).
    pub zone_flag: Option<String>,
    /// The `TZ` environment variable.
    pub zone_env: Option<String>,
    /// The limits on what clients can make the server hold.
    pub limits: Limits,
    /// The listen backlog.
    pub backlog: u32,
    /// Executor threads.
    pub threads: usize,
    /// The most detailed log lines written.
    pub log: Level,
    /// Where to serve the metrics page, if anywhere.
    pub metrics: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            zone_flag: None,
            zone_env: None,
            limits: Limits::default(),
            backlog: DEFAULT_BACKLOG,
            threads: DEFAULT_THREADS,
            log: DEFAULT_LOG,
            metrics: None,
        }
    }
}

/// The log level unless `JAM_LOG` or `--quiet` says otherwise: a line per connection.
pub const DEFAULT_LOG: Level = Level::Info;

impl Config {
    /// The defaults, overridden by the `JAM_…` variables and `TZ` that `env` looks up. `jam serve`
    /// starts from this before its flags; the appliance's init, which has no flags, uses it as it is.
    pub fn from_env(env: Env) -> Result<Config, Error> {
        let mut c = Config { zone_env: env("TZ"), ..Config::default() };
        let limits = &mut c.limits;
        env_override(env, "JAM_LISTEN", settings::listen_addr, &mut c.listen)?;
        env_override(env, "JAM_MAX_LINE", settings::line_limit, &mut limits.connection.max_line)?;
        env_override(env, "JAM_IDLE_TIMEOUT", settings::duration, &mut limits.connection.idle_timeout)?;
        env_override(env, "JAM_LINE_TIMEOUT", settings::duration, &mut limits.connection.line_timeout)?;
        env_override(env, "JAM_MAX_CONNECTIONS", settings::count, &mut limits.max_connections)?;
        env_override(
            env,
            "JAM_MAX_PER_ADDRESS",
            |s| settings::count(s).map(Some),
            &mut limits.max_per_address,
        )?;
        env_override(env, "JAM_GRACE", settings::duration, &mut limits.grace)?;
        env_override(env, "JAM_BACKLOG", settings::backlog, &mut c.backlog)?;
        env_override(env, "JAM_THREADS", settings::count, &mut c.threads)?;
        env_override(env, "JAM_LOG", settings::log_level, &mut c.log)?;
        env_override(env, "JAM_METRICS", |s| http::page_addr(s).map(Some), &mut c.metrics)?;
        Ok(c)
    }
}

/// `jam serve --help`.
pub fn help() -> String {
    let d = Config::default();
    format!(
        "jam serve: run the time server

Usage: jam serve [OPTIONS]

Answers TIME + CR LF with JAM hh:mm:ss + CR LF, many requests per connection and many
connections at once; QUIT + CR LF ends a session. Anything else gets an ERROR line. Logs one
line per event to stderr. SIGTERM or SIGINT: stop accepting, deliver replies owed, exit 0.

Options:
  -l, --listen ADDR         address and port to listen on; [::]:PORT for IPv6 too
                            [env: JAM_LISTEN] [default: {listen}]
      --tz ZONE             time zone of the replies: an IANA name (Asia/Jakarta) or a POSIX
                            rule (WIB-7) [env: TZ] [default: the system's zone, else UTC]
      --max-line BYTES      longest request line, CR LF included; a longer one is an error
                            and closes the connection [env: JAM_MAX_LINE] [default: {max_line}]
      --idle-timeout DUR    close a connection that sends nothing for this long
                            [env: JAM_IDLE_TIMEOUT] [default: {idle}]
      --line-timeout DUR    close a connection that takes longer to finish a line
                            [env: JAM_LINE_TIMEOUT] [default: {line}]
      --max-connections N   connections at once; more get ERROR server busy
                            [env: JAM_MAX_CONNECTIONS] [default: {max_conn}]
      --max-per-address N   connections at once from one client address; more get ERROR too
                            many connections from your address (one machine's concurrency
                            test is served thousands; one flood leaves half the places free)
                            [env: JAM_MAX_PER_ADDRESS] [default: half of --max-connections]
      --backlog N           connections the kernel queues before jam accepts them; past it
                            new handshakes wait a second to be retried (the kernel caps it
                            at net.core.somaxconn) [env: JAM_BACKLOG] [default: {backlog}]
      --grace DUR           on SIGTERM, how long connections get to finish
                            [env: JAM_GRACE] [default: {grace}]
      --threads N           executor threads [env: JAM_THREADS] [default: {threads}]
  -q, --quiet               log the start, the stop, warnings and errors, not every connection
                            [env: JAM_LOG=error|warn|notice|info|debug|off] [default: {log}]
      --metrics ADDR        serve Prometheus metrics at http://ADDR/metrics: PORT alone is on
                            127.0.0.1, 0.0.0.0:PORT for every address (docs/OPERATIONS.md)
                            [env: JAM_METRICS] [default: off]
  -h, --help                print this help

DUR is a number of seconds or a span such as 500ms, 30s, 5m.
",
        listen = d.listen,
        max_line = d.limits.connection.max_line,
        idle = show(d.limits.connection.idle_timeout),
        line = show(d.limits.connection.line_timeout),
        max_conn = d.limits.max_connections,
        grace = show(d.limits.grace),
        backlog = d.backlog,
        threads = d.threads,
        log = d.log.name(),
    )
}

/// Parses `jam serve`'s arguments, after the environment `env` looks up.
pub fn parse(p: &mut lexopt::Parser, env: Env) -> Result<Parsed<Config>, Error> {
    // The environment first, so that the flags parsed next override it.
    let mut c = Config::from_env(env)?;
    let limits = &mut c.limits;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('l') | Long("listen") => c.listen = value(p, "--listen", settings::listen_addr)?,
            Long("tz") => c.zone_flag = Some(text(p)?),
            Long("max-line") => limits.connection.max_line = value(p, "--max-line", settings::line_limit)?,
            Long("idle-timeout") => {
                limits.connection.idle_timeout = value(p, "--idle-timeout", settings::duration)?
            }
            Long("line-timeout") => {
                limits.connection.line_timeout = value(p, "--line-timeout", settings::duration)?
            }
            Long("max-connections") => {
                limits.max_connections = value(p, "--max-connections", settings::count)?
            }
            Long("max-per-address") => {
                limits.max_per_address = Some(value(p, "--max-per-address", settings::count)?)
            }
            Long("grace") => limits.grace = value(p, "--grace", settings::duration)?,
            Long("backlog") => c.backlog = value(p, "--backlog", settings::backlog)?,
            Long("threads") => c.threads = value(p, "--threads", settings::count)?,
            Short('q') | Long("quiet") => c.log = c.log.min(Level::Notice),
            Long("metrics") => c.metrics = Some(value(p, "--metrics", http::page_addr)?),
            Short('h') | Long("help") => return Ok(Parsed::Help),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Parsed::Run(c))
}
