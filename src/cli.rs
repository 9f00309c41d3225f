//! Command-line parsing: arguments and environment in, a plain [`Command`] out.
//!
//! Parsing touches neither the process's arguments nor its environment directly; both are
//! passed in, so every rule here is a unit test. lexopt (ripgrep's parser) keeps this small in
//! the binary. Precedence for server settings: flag, then `JAM_…` variable, then default.

use std::ffi::OsString;

use lexopt::prelude::*;

use crate::Error;
use crate::bench::{BenchArgs, Mode};
use crate::check::CheckArgs;
use crate::client::{ProbeArgs, QueryArgs, Target};
use crate::lab::LabArgs;
use crate::log::Level;
use crate::server::Config;
use crate::settings::{self, show};
use crate::talk::TalkArgs;
use crate::wire::WireArgs;

/// What to do, fully parsed.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `jam serve`.
    Serve(Config),
    /// `jam query`.
    Query(QueryArgs),
    /// `jam probe`.
    Probe(ProbeArgs),
    /// `jam check`.
    Check(CheckArgs),
    /// `jam talk`.
    Talk(TalkArgs),
    /// `jam lab`.
    Lab(LabArgs),
    /// `jam wire`.
    Wire(WireArgs),
    /// `jam bench`.
    Bench(BenchArgs),
    /// Run as PID 1 of the appliance.
    Init,
    /// Print this text to stdout and exit 0.
    Help(String),
}

/// `jam --version`'s line.
pub fn version() -> String {
    format!("jam {}", env!("CARGO_PKG_VERSION"))
}

/// `jam --help`.
pub fn main_help() -> String {
    format!(
        "{}: the networking lab's TCP time server, client and health probe

Usage: jam <COMMAND> [OPTIONS]

Commands:
  serve   run the time server: TIME + CR LF gets JAM hh:mm:ss + CR LF
  query   ask a server for the time, like printf 'TIME\\r\\n' | nc HOST 45000
  probe   health check for containers: exit 0 if a server answers, 1 if not
  check   grade any time server against the lab sheet: a report card, PASS/FAIL per check
  talk    send raw bytes or typed lines to any server and show what comes back, like nc -C
  lab     the three-machine lab on 127.16.16.x: no root, no Docker
  bench   load generator: requests/s, latency, CPU per request; checks every reply
  init    PID 1 of the appliance VM (run as /init, it starts by itself)
  wire    the network of deploy/netns: a switch with delay, jitter, loss and rate (root)

Options:
  -h, --help      print help (also after a command: jam serve --help)
  -V, --version   print the version

Exit status: 0 success, 1 failure, 2 bad usage.
",
        version()
    )
}

fn serve_help() -> String {
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
                            many connections from your address
                            [env: JAM_MAX_PER_ADDRESS] [default: {per_address}]
      --backlog N           connections the kernel queues before jam accepts them; past it
                            new handshakes wait a second to be retried (the kernel caps it
                            at net.core.somaxconn) [env: JAM_BACKLOG] [default: {backlog}]
      --grace DUR           on SIGTERM, how long connections get to finish
                            [env: JAM_GRACE] [default: {grace}]
      --threads N           executor threads [env: JAM_THREADS] [default: {threads}]
  -q, --quiet               log the start, the stop, warnings and errors, not every connection
                            [env: JAM_LOG=error|warn|notice|info|debug|off] [default: {log}]
  -h, --help                print this help

DUR is a number of seconds or a span such as 500ms, 30s, 5m.
",
        listen = d.listen,
        max_line = d.limits.connection.max_line,
        idle = show(d.limits.connection.idle_timeout),
        line = show(d.limits.connection.line_timeout),
        max_conn = d.limits.max_connections,
        per_address = d.limits.max_per_address,
        grace = show(d.limits.grace),
        backlog = d.backlog,
        threads = d.threads,
        log = d.log.name(),
    )
}

fn query_help() -> String {
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

fn probe_help() -> String {
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

fn check_help() -> String {
    let d = CheckArgs::default();
    format!(
        "jam check: grade a time server, jam or any other, against the lab sheet

Usage: jam check [OPTIONS] [HOST[:PORT]]

Runs a series of checks against the server and prints a report card: PASS, FAIL or WARN per
check, and for anything but a pass what was sent and the exact bytes that came back. Required
checks are what the sheet asks (1.a to 1.d): connections, TIME answered with exactly
JAM hh:mm:ss CR LF at the current time, several requests per connection, QUIT, concurrent
clients. Recommended checks are what TCP asks where the sheet is silent: split and joined
requests, half-close, unknown and bare-LF lines, an over-long line, a client that never reads,
many idle connections. Exits 0 when every required check is met, 1 when one is not.

Arguments:
  [HOST[:PORT]]           server to grade [default: {target}]

Options:
      --tz ZONE           the zone the replies should be in: an IANA name or a POSIX rule
                          [default: {zone}]
  -t, --timeout DUR       how long each step waits: a connection, a reply, a close
                          [default: {timeout}]
      --tolerance DUR     how far the server's time may be from this machine's [default: {tolerance}]
  -c, --clients N         clients connected at once in the concurrency check [default: {clients}]
      --json              print one JSON object instead of the report card
  -h, --help              print this help

At most {idle} connections at once and 1 MiB sent per check: gentle enough for a student's server.
",
        target = d.target,
        zone = d.zone,
        timeout = show(d.timeout),
        tolerance = show(d.tolerance),
        clients = d.clients,
        idle = crate::check::IDLE_CONNECTIONS + 1,
    )
}

fn talk_help() -> String {
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
        port = crate::protocol::DEFAULT_PORT,
        timeout = show(d.timeout),
    )
}

fn lab_help() -> String {
    let d = LabArgs::default();
    format!(
        "jam lab: the course's three-machine experiment on the loopback range

Usage: jam lab [OPTIONS]

Needs no root and no Docker. mesin1 serves on 127.16.16.101; mesin2 and mesin3 connect from
127.16.16.102 and 127.16.16.103 at the same time, each running connect, TIME, QUIT a few times.
Prints the transcript, the server's log included, and exits 0 when every query was answered.

Options:
  -p, --port PORT         mesin1's port; 0 for any free one [default: {port}]
  -n, --rounds N          sessions each client runs [default: {rounds}]
  -i, --interval DUR      pause between a client's sessions [default: {interval}]
      --tz ZONE           time zone of the replies [env: TZ] [default: the system's, else UTC]
  -h, --help              print this help
",
        port = d.port,
        rounds = d.rounds,
        interval = show(d.interval),
    )
}

fn wire_help() -> &'static str {
    "jam wire: a user-space Ethernet switch with impairments, for the network-namespace lab

Usage: jam wire [OPTIONS] PORT...

Creates one TAP interface per PORT and switches frames between them, applying to the frames
each port sends the impairment its line in the file gives (delay, jitter, loss, rate), like
netem, which many kernels lack. deploy/netns/lab runs it; see deploy/netns/README.md. Needs root
(CAP_NET_ADMIN). SIGHUP rereads the file; SIGTERM or SIGINT stop it.

Options:
      --impairments FILE  lines of NAME [delay MS] [jitter MS] [loss PCT] [rate RATE]
  -h, --help              print this help
"
}

fn bench_help() -> String {
    let d = BenchArgs::default();
    format!(
        "jam bench: load generator for a jam server (or any one-line request/reply server)

Usage: jam bench [OPTIONS] [HOST[:PORT]]

Every reply is checked; a wrong or missing one is an error, counted and shown. Prints
requests per second, latency percentiles, its own CPU use and, with --server-pid, the
server's CPU time per request and memory.

Modes:
  rr         each connection sends a request, waits for the reply, repeats
  pipeline   each connection keeps --depth requests in flight
  churn      per request: connect, request, reply, QUIT, until the server closes (as nc)
  idle       open the connections, hold them for the duration, check each is still served

Arguments:
  [HOST[:PORT]]            server to load [default: {target}]

Options:
  -m, --mode MODE          rr, pipeline, churn or idle [default: {mode}]
  -c, --connections N      connections [default: {connections}]
  -d, --duration DUR       how long to load [default: {duration}]
      --depth N            requests in flight per connection, pipeline mode [default: {depth}]
      --threads N          load generator threads [default: {threads}]
      --sources N          spread the connections over source addresses 127.0.0.1 to
                           127.0.0.N, past one address's limits (loopback servers)
                           [default: {sources}]
      --request TEXT       the request line, without CR LF [default: {request}]
      --expect TEXT        what each reply must start with [default: a strict JAM hh:mm:ss]
      --server-pid PID     report this process's CPU time per request and memory
      --json               print the report as one JSON object
  -h, --help               print this help
",
        target = d.target,
        mode = d.mode.name(),
        connections = d.connections,
        duration = show(d.duration),
        depth = d.depth,
        threads = d.threads,
        sources = d.sources,
        request = d.request,
    )
}

const INIT_HELP: &str = "jam init: PID 1 of the appliance, a virtual machine in which jam is the whole system

Usage: jam init        (or jam as /init with no arguments: it notices that it is PID 1)

Mounts /proc, /sys and /dev, loads the modules in /lib/modules/jam, configures lo and the
interface of the kernel's ip= parameter, serves on port 45000, reaps orphans, and powers off on
the ACPI power button, ctrl-alt-del or SIGTERM. Settings are the kernel command line's NAME=value
words (TZ, JAM_...). See deploy/appliance/README.md.
";

/// Parses the arguments after the program name. `env` looks up an environment variable.
/// Every error is a usage error (exit status 2).
pub fn parse<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error>
where
    I: IntoIterator<Item = OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next().map_err(usage)? {
        None => {
            return Err(Error::usage(
                "a command is needed: serve, query, probe, check, talk, lab, wire or bench (see jam --help)",
            ));
        }
        Some(Short('h') | Long("help")) => return Ok(Command::Help(main_help())),
        Some(Short('V') | Long("version")) => return Ok(Command::Help(version() + "\n")),
        Some(Value(v)) => v.string().map_err(usage)?,
        Some(other) => return Err(usage(other.unexpected())),
    };
    match command.as_str() {
        "serve" => parse_serve(&mut parser, env),
        "query" => parse_query(&mut parser),
        "probe" => parse_probe(&mut parser),
        "check" => parse_check(&mut parser),
        "talk" => parse_talk(&mut parser),
        "lab" => parse_lab(&mut parser, env),
        "wire" => parse_wire(&mut parser),
        "bench" => parse_bench(&mut parser),
        "init" => match parser.next().map_err(usage)? {
            None => Ok(Command::Init),
            Some(Short('h') | Long("help")) => Ok(Command::Help(INIT_HELP.into())),
            Some(other) => Err(usage(other.unexpected())),
        },
        "help" => Ok(Command::Help(main_help())),
        other => Err(Error::usage(format!(
            "unknown command {other:?}: expected serve, query, probe, check, talk, lab, wire or bench (see jam --help)"
        ))),
    }
}

fn usage(e: lexopt::Error) -> Error {
    Error::usage(e.to_string())
}

/// The next argument as text.
fn text(p: &mut lexopt::Parser) -> Result<String, Error> {
    p.value().map_err(usage)?.string().map_err(usage)
}

/// The value of `flag`, parsed; a bad one is reported as `--flag: why`.
fn value<T>(
    p: &mut lexopt::Parser,
    flag: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, Error> {
    parse(&text(p)?).map_err(|why| Error::usage(format!("{flag}: {why}")))
}

/// The one positional argument of query, probe and bench: the server.
fn target(slot: &mut Option<Target>, v: OsString) -> Result<(), Error> {
    if slot.is_some() {
        return Err(usage(lexopt::Arg::Value(v).unexpected()));
    }
    *slot = Some(Target::parse(&v.string().map_err(usage)?).map_err(|e| Error::usage(e.to_string()))?);
    Ok(())
}

fn parse_serve(p: &mut lexopt::Parser, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error> {
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
                limits.max_per_address = value(p, "--max-per-address", settings::count)?
            }
            Long("grace") => limits.grace = value(p, "--grace", settings::duration)?,
            Long("backlog") => c.backlog = value(p, "--backlog", settings::backlog)?,
            Long("threads") => c.threads = value(p, "--threads", settings::count)?,
            Short('q') | Long("quiet") => c.log = c.log.min(Level::Notice),
            Short('h') | Long("help") => return Ok(Command::Help(serve_help())),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Command::Serve(c))
}

fn parse_query(p: &mut lexopt::Parser) -> Result<Command, Error> {
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
            Short('h') | Long("help") => return Ok(Command::Help(query_help())),
            Value(v) => target(&mut server, v)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Command::Query(args))
}

fn parse_probe(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = ProbeArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Short('v') | Long("verbose") => args.verbose = true,
            Short('h') | Long("help") => return Ok(Command::Help(probe_help())),
            Value(v) => target(&mut server, v)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Command::Probe(args))
}

fn parse_check(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = CheckArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("tz") => args.zone = text(p)?,
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Long("tolerance") => args.tolerance = value(p, "--tolerance", settings::duration_or_zero)?,
            Short('c') | Long("clients") => args.clients = value(p, "--clients", settings::count)?,
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Ok(Command::Help(check_help())),
            Value(v) => target(&mut server, v)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Command::Check(args))
}

fn parse_talk(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = TalkArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('s') | Long("send") => args.send = Some(value(p, "--send", crate::protocol::unescape)?),
            Short('b') | Long("show-bytes") => args.show_bytes = true,
            Short('t') | Long("timeout") => args.timeout = value(p, "--timeout", settings::duration)?,
            Short('h') | Long("help") => return Ok(Command::Help(talk_help())),
            Value(v) => target(&mut server, v)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.ok_or_else(|| Error::usage("jam talk needs a server: jam talk HOST[:PORT]"))?;
    Ok(Command::Talk(args))
}

fn parse_lab(p: &mut lexopt::Parser, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error> {
    let mut args = LabArgs { zone_env: env("TZ"), ..LabArgs::default() };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('p') | Long("port") => args.port = value(p, "--port", settings::port)?,
            Short('n') | Long("rounds") => args.rounds = value(p, "--rounds", settings::count)? as u64,
            Short('i') | Long("interval") => {
                args.interval = value(p, "--interval", settings::duration_or_zero)?
            }
            Long("tz") => args.zone_flag = Some(text(p)?),
            Short('h') | Long("help") => return Ok(Command::Help(lab_help())),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Command::Lab(args))
}

fn parse_bench(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = BenchArgs::default();
    let mut server = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('m') | Long("mode") => {
                args.mode = value(p, "--mode", |m| {
                    Mode::parse(m).ok_or_else(|| format!("{m:?}: expected rr, pipeline, churn or idle"))
                })?
            }
            Short('c') | Long("connections") => {
                args.connections = value(p, "--connections", settings::count)?
            }
            Short('d') | Long("duration") => args.duration = value(p, "--duration", settings::duration)?,
            Long("depth") => args.depth = value(p, "--depth", settings::count)?,
            Long("threads") => args.threads = value(p, "--threads", settings::count)?,
            Long("sources") => args.sources = value(p, "--sources", settings::sources)?,
            Long("request") => args.request = text(p)?,
            Long("expect") => args.expect = Some(text(p)?),
            Long("server-pid") => {
                args.server_pid = Some(value(p, "--server-pid", |s| {
                    s.parse().map_err(|_| format!("{s:?} is not a process ID"))
                })?)
            }
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Ok(Command::Help(bench_help())),
            Value(v) => target(&mut server, v)?,
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = server.unwrap_or_default();
    Ok(Command::Bench(args))
}

fn parse_wire(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = WireArgs { ports: Vec::new(), impairments: None };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("impairments") => args.impairments = Some(text(p)?.into()),
            Short('h') | Long("help") => return Ok(Command::Help(wire_help().into())),
            Value(v) => args.ports.push(v.string().map_err(usage)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    if args.ports.len() < 2 {
        return Err(Error::usage("jam wire needs at least two ports to switch between"));
    }
    Ok(Command::Wire(args))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{protocol, server};

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, Error> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        parse(args.iter().map(OsString::from), &lookup)
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> (Config, Level) {
        match parse_with(args, env).unwrap() {
            Command::Serve(config) => (config.clone(), config.log),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serve_defaults() {
        let (c, log) = serve(&["serve"], &[]);
        assert_eq!(c.listen, "0.0.0.0:45000".parse().unwrap());
        assert_eq!(c.limits, server::Limits::default());
        assert_eq!((c.threads, c.zone_flag, c.zone_env, log), (1, None, None, Level::Info));
    }

    #[test]
    fn flags_override_environment_which_overrides_defaults() {
        let env = [
            ("JAM_LISTEN", "127.0.0.1:1"),
            ("JAM_IDLE_TIMEOUT", "60"),
            ("JAM_MAX_CONNECTIONS", "5"),
            ("JAM_LOG", "debug"),
            ("TZ", "Asia/Jakarta"),
        ];
        let (c, log) = serve(&["serve"], &env);
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.limits.connection.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!((log, c.zone_env.as_deref()), (Level::Debug, Some("Asia/Jakarta")));

        let (c, log) = serve(
            &[
                "serve",
                "--listen",
                "[::1]:0",
                "--idle-timeout",
                "500ms",
                "--max-connections=7",
                "-q",
                "--tz",
                "UTC",
            ],
            &env,
        );
        assert_eq!(c.listen, "[::1]:0".parse().unwrap());
        assert_eq!(c.limits.connection.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!((log, c.zone_flag.as_deref()), (Level::Notice, Some("UTC")));
    }

    #[test]
    fn bad_values_name_the_flag_or_variable() {
        let err = parse_with(&["serve", "--max-line", "3"], &[]).unwrap_err().to_string();
        assert!(err.starts_with("--max-line: 3 is too small"), "{err}");
        let err = parse_with(&["serve"], &[("JAM_GRACE", "later")]).unwrap_err().to_string();
        assert!(err.starts_with("environment variable JAM_GRACE:"), "{err}");
        let err = parse_with(&["serve", "--bogus"], &[]).unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
        let err = parse_with(&["fly"], &[]).unwrap_err().to_string();
        assert!(err.contains("unknown command \"fly\""), "{err}");
        assert!(parse_with(&[], &[]).is_err());
        // Every parse error is a usage error: exit status 2.
        for args in [&["serve", "--bogus"][..], &["fly"], &[], &["query", "a", "b"], &["bench", "-m", "x"]] {
            assert!(parse_with(args, &[]).unwrap_err().is_usage(), "{args:?}");
        }
    }

    #[test]
    fn query_and_probe() {
        let Command::Query(q) = parse_with(&["query", "mesin1", "-n", "3", "--interval", "0"], &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (q.target.host.as_str(), q.target.port, q.count, q.interval),
            ("mesin1", 45000, 3, Duration::ZERO)
        );
        let Command::Probe(p) = parse_with(&["probe", "-v", "--timeout", "1s"], &[]).unwrap() else {
            panic!()
        };
        assert_eq!((p.target, p.timeout, p.verbose), (Target::default(), Duration::from_secs(1), true));
        assert!(parse_with(&["query", "a", "b"], &[]).is_err());
        let Command::Query(q) = parse_with(&["query", "-r", "--count", "0"], &[]).unwrap() else { panic!() };
        assert_eq!((q.count, q.reconnect), (0, true));
    }

    #[test]
    fn help_everywhere() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["serve", "--help"],
            &["query", "-h"],
            &["probe", "--help"],
        ] {
            assert!(matches!(parse_with(args, &[]), Ok(Command::Help(_))), "{args:?}");
        }
        let Ok(Command::Help(v)) = parse_with(&["--version"], &[]) else { panic!() };
        assert_eq!(v, format!("jam {}\n", env!("CARGO_PKG_VERSION")));
    }

    /// A default a help text states, with what it belongs to.
    #[derive(Debug)]
    struct Stated {
        /// The option (`--listen`), or `None` for the positional argument.
        flag: Option<String>,
        /// Whether the option takes a value (`-q` does not).
        takes_value: bool,
        /// The environment variable that sets the same thing.
        env: Option<String>,
        value: String,
    }

    /// Every `[default: ...]` in `help`, each with the option or argument whose description holds it.
    fn stated_defaults(help: &str) -> Vec<Stated> {
        let mut found = Vec::new();
        let (mut flag, mut takes_value) = (None, false);
        let mut env = None;
        for line in help.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("  -") || line.starts_with("      --") {
                let at = words.iter().position(|w| w.starts_with("--")).expect("a long option");
                flag = Some(words[at].to_string());
                takes_value = words.get(at + 1).is_some_and(|w| w.chars().all(|c| c.is_ascii_uppercase()));
                env = None;
            } else if line.starts_with("  [") {
                (flag, takes_value, env) = (None, true, None);
            }
            if let Some(rest) = line.split("[env: ").nth(1) {
                env = Some(rest.split([']', '=']).next().unwrap().to_string());
            }
            if let Some(rest) = line.split("[default: ").nth(1) {
                let value = rest.rsplit_once(']').unwrap().0.to_string();
                found.push(Stated { flag: flag.clone(), takes_value, env: env.clone(), value });
            }
        }
        found
    }

    /// Defaults that help describes in words rather than as a value to give.
    const DESCRIBED: [&str; 3] =
        ["the system's zone, else UTC", "the system's, else UTC", "a strict JAM hh:mm:ss"];

    #[test]
    fn every_default_in_the_help_is_the_codes_default() {
        // Each command with the arguments it cannot do without.
        let helps: [(&[&str], String); 7] = [
            (&["serve"], serve_help()),
            (&["query"], query_help()),
            (&["probe"], probe_help()),
            (&["check"], check_help()),
            (&["talk", "mesin1"], talk_help()),
            (&["lab"], lab_help()),
            (&["bench"], bench_help()),
        ];
        let mut checked = 0;
        for (base, help) in helps {
            let with = |extra: &[&str], env: &[(&str, &str)]| {
                parse_with(&[base, extra].concat(), env).unwrap_or_else(|e| panic!("{base:?} {extra:?}: {e}"))
            };
            let plain = with(&[], &[]);
            for stated in stated_defaults(&help) {
                if DESCRIBED.contains(&stated.value.as_str()) {
                    continue;
                }
                let v = stated.value.as_str();
                // Giving the stated default explicitly must change nothing.
                match (&stated.flag, stated.takes_value) {
                    (Some(flag), true) => {
                        assert_eq!(with(&[flag, v], &[]), plain, "{base:?} {flag} {v}");
                        checked += 1;
                    }
                    (Some(_), false) => {}
                    (None, _) => {
                        assert_eq!(with(&[v], &[]), plain, "{base:?} {v}");
                        checked += 1;
                    }
                }
                if let Some(var) = &stated.env {
                    assert_eq!(with(&[], &[(var, v)]), plain, "{base:?}: {var}={v}");
                    checked += 1;
                }
            }
        }
        // Every option with a default above, so that a help text this test cannot read fails it.
        assert!(checked >= 30, "only {checked} defaults checked");
    }

    #[test]
    fn the_protocol_doc_states_the_codes_replies_and_limits() {
        let doc = include_str!("../docs/PROTOCOL.md");
        let errors = [
            protocol::RequestError::Unknown,
            protocol::RequestError::BareLf,
            protocol::RequestError::NotUtf8,
            protocol::RequestError::Control,
            protocol::RequestError::TooLong,
        ];
        let replies = errors.iter().map(|e| e.reply()).chain([
            protocol::BUSY,
            protocol::TOO_MANY_FROM_ADDRESS,
            protocol::IDLE_TIMEOUT,
            protocol::LINE_TIMEOUT,
            protocol::SHUTTING_DOWN,
        ]);
        for reply in replies {
            let text = std::str::from_utf8(reply.strip_suffix(b"\r\n").unwrap()).unwrap();
            assert!(doc.contains(&format!("`{text}`")), "docs/PROTOCOL.md does not show {text:?}");
        }
        // The limits table: "| `--flag`, VALUE [unit] |", each the flag's default.
        let plain = parse_with(&["serve"], &[]).unwrap();
        let mut rows = 0;
        for cell in doc.split('|').map(str::trim).filter(|c| c.starts_with("`--")) {
            let (flag, value) = cell.split_once(", ").unwrap();
            let number = value.split_whitespace().next().unwrap();
            let flag = flag.trim_matches('`');
            assert_eq!(parse_with(&["serve", flag, number], &[]).unwrap(), plain, "PROTOCOL.md: {cell}");
            rows += 1;
        }
        assert_eq!(rows, 6, "the limits table has a row per limit");
        let prose = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let budget = format!("{} KiB of replies", crate::connection::OUTPUT_BUDGET / 1024);
        assert!(prose.contains(&budget), "PROTOCOL.md should say {budget:?}");
        let linger = format!("up to {} s", crate::connection::LINGER.as_secs());
        assert!(prose.contains(&linger), "PROTOCOL.md should say {linger:?}");
    }
}
