//! Command-line parsing: arguments and environment in, a plain [`Command`] out.
//!
//! Parsing touches neither the process's arguments nor its environment directly; both are
//! passed in, so every rule here is a unit test. lexopt (ripgrep's parser) keeps this small in
//! the binary. Precedence for server settings: flag, then `JAM_…` variable, then default.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use lexopt::prelude::*;

use crate::Error;
use crate::bench::{BenchArgs, Mode};
use crate::client::{self, ProbeArgs, QueryArgs, Target};
use crate::lab::LabArgs;
use crate::log::Level;
use crate::protocol::{DEFAULT_PORT, MIN_MAX_LINE};
use crate::server::{self, Config, DEFAULT_THREADS, Limits};
use crate::wire::WireArgs;

/// What to do, fully parsed.
#[derive(Debug, PartialEq)]
pub enum Command {
    Serve {
        config: Config,
        log: Level,
    },
    Query(QueryArgs),
    Probe(ProbeArgs),
    Lab(LabArgs),
    Wire(WireArgs),
    Bench(BenchArgs),
    /// Run as PID 1 of the appliance.
    Init,
    /// Print this text to stdout and exit 0.
    Help(String),
}

/// Exit codes, documented in `--help` and the README.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

pub fn version() -> String {
    format!("jam {}", env!("CARGO_PKG_VERSION"))
}

pub fn main_help() -> String {
    format!(
        "{}: the networking lab's TCP time server, client and health probe

Usage: jam <COMMAND> [OPTIONS]

Commands:
  serve   run the time server: TIME + CR LF gets JAM hh:mm:ss + CR LF
  query   ask a server for the time, like printf 'TIME\\r\\n' | nc HOST 45000
  probe   health check for containers: exit 0 if a server answers, 1 if not
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
    format!(
        "jam serve: run the time server

Usage: jam serve [OPTIONS]

Answers TIME + CR LF with JAM hh:mm:ss + CR LF, many requests per connection and many
connections at once; QUIT + CR LF ends a session. Anything else gets an ERROR line. Logs one
line per event to stderr. SIGTERM or SIGINT: stop accepting, deliver replies owed, exit 0.

Options:
  -l, --listen ADDR         address and port to listen on; [::]:PORT for IPv6 too
                            [env: JAM_LISTEN] [default: 0.0.0.0:{port}]
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
      --grace DUR           on SIGTERM, how long connections get to finish
                            [env: JAM_GRACE] [default: {grace}]
      --threads N           executor threads [env: JAM_THREADS] [default: 1]
  -q, --quiet               log the start, the stop, warnings and errors, not every connection
                            [env: JAM_LOG=error|warn|notice|info|debug|off] [default: info]
  -h, --help                print this help

DUR is a number of seconds or a span such as 500ms, 30s, 5m.
",
        port = DEFAULT_PORT,
        max_line = crate::protocol::DEFAULT_MAX_LINE,
        idle = client::show(server::DEFAULT_IDLE_TIMEOUT),
        line = client::show(server::DEFAULT_LINE_TIMEOUT),
        max_conn = server::DEFAULT_MAX_CONNECTIONS,
        grace = client::show(server::DEFAULT_GRACE),
    )
}

fn query_help() -> String {
    format!(
        "jam query: ask a server for the time

Usage: jam query [OPTIONS] [HOST[:PORT]]

Connects, sends TIME + CR LF, prints the JAM reply line, sends QUIT + CR LF and waits for the
server to close. Exits 1 with a one-line error if the connection is refused, a step times out,
or the reply is not a JAM line. SIGTERM or SIGINT ends a repeating query cleanly, exit 0.

Arguments:
  [HOST[:PORT]]           server to ask; a name, IPv4 or [IPv6] address [default: 127.0.0.1:{port}]

Options:
  -n, --count N           requests to send; 0 for until SIGTERM or SIGINT, carrying on
                          after a failed request (reported) with a new connection [default: 1]
  -i, --interval DUR      pause between requests [default: 1s]
  -r, --reconnect         a new connection for each request (connect, TIME, QUIT), as the
                          lab's nc clients do; without it, all requests share one connection
  -t, --timeout DUR       limit on each step: connect, reply, close [default: {timeout}]
  -h, --help              print this help
",
        port = DEFAULT_PORT,
        timeout = client::show(client::DEFAULT_QUERY_TIMEOUT),
    )
}

fn probe_help() -> String {
    format!(
        "jam probe: health check for a container or orchestrator

Usage: jam probe [OPTIONS] [HOST[:PORT]]

Exits 0 if a JAM reply arrives within the timeout, 1 otherwise. Prints nothing unless -v.
Meant for HEALTHCHECK [\"/jam\", \"probe\"] in an image with no shell.

Arguments:
  [HOST[:PORT]]           server to check [default: 127.0.0.1:{port}]

Options:
  -t, --timeout DUR       limit on the whole check [default: {timeout}]
  -v, --verbose           say what was found, healthy or not
  -h, --help              print this help
",
        port = DEFAULT_PORT,
        timeout = client::show(client::DEFAULT_PROBE_TIMEOUT),
    )
}

fn lab_help() -> String {
    format!(
        "jam lab: the course's three-machine experiment on the loopback range

Usage: jam lab [OPTIONS]

Needs no root and no Docker. mesin1 serves on 127.16.16.101; mesin2 and mesin3 connect from
127.16.16.102 and 127.16.16.103 at the same time, each running connect, TIME, QUIT a few times.
Prints the transcript, the server's log included, and exits 0 when every query was answered.

Options:
  -p, --port PORT         mesin1's port; 0 for any free one [default: {port}]
  -n, --rounds N          sessions each client runs [default: 3]
  -i, --interval DUR      pause between a client's sessions [default: 1s]
      --tz ZONE           time zone of the replies [env: TZ] [default: the system's, else UTC]
  -h, --help              print this help
",
        port = DEFAULT_PORT,
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
  [HOST[:PORT]]            server to load [default: 127.0.0.1:{port}]

Options:
  -m, --mode MODE          rr, pipeline, churn or idle [default: rr]
  -c, --connections N      connections [default: 64]
  -d, --duration DUR       how long to load [default: 5s]
      --depth N            requests in flight per connection, pipeline mode [default: 32]
      --threads N          load generator threads [default: 1]
      --request TEXT       the request line, without CR LF [default: TIME]
      --expect TEXT        what each reply must start with [default: a strict JAM hh:mm:ss]
      --server-pid PID     report this process's CPU time per request and memory
      --json               print the report as one JSON object
  -h, --help               print this help
",
        port = DEFAULT_PORT,
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
pub fn parse<I>(args: I, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error>
where
    I: IntoIterator<Item = OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next().map_err(usage)? {
        None => {
            return Err(Error::new(
                "a command is needed: serve, query, probe, lab, wire or bench (see jam --help)",
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
        "lab" => parse_lab(&mut parser, env),
        "wire" => parse_wire(&mut parser),
        "bench" => parse_bench(&mut parser),
        "init" => match parser.next().map_err(usage)? {
            None => Ok(Command::Init),
            Some(Short('h') | Long("help")) => Ok(Command::Help(INIT_HELP.into())),
            Some(other) => Err(usage(other.unexpected())),
        },
        "help" => Ok(Command::Help(main_help())),
        other => Err(Error::new(format!(
            "unknown command {other:?}: expected serve, query, probe, lab, wire or bench (see jam --help)"
        ))),
    }
}

fn usage(e: lexopt::Error) -> Error {
    Error::new(e.to_string())
}

fn parse_serve(p: &mut lexopt::Parser, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error> {
    // Environment first, so that flags parsed next override it.
    let from_env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut listen = match from_env("JAM_LISTEN") {
        Some(v) => listen_addr(&v).map_err(|e| in_env("JAM_LISTEN", e))?,
        None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
    };
    let mut limits = Limits::default();
    if let Some(v) = from_env("JAM_MAX_LINE") {
        limits.max_line = line_limit(&v).map_err(|e| in_env("JAM_MAX_LINE", e))?;
    }
    if let Some(v) = from_env("JAM_IDLE_TIMEOUT") {
        limits.idle_timeout = duration(&v).map_err(|e| in_env("JAM_IDLE_TIMEOUT", e))?;
    }
    if let Some(v) = from_env("JAM_LINE_TIMEOUT") {
        limits.line_timeout = duration(&v).map_err(|e| in_env("JAM_LINE_TIMEOUT", e))?;
    }
    if let Some(v) = from_env("JAM_MAX_CONNECTIONS") {
        limits.max_connections = count(&v).map_err(|e| in_env("JAM_MAX_CONNECTIONS", e))?;
    }
    if let Some(v) = from_env("JAM_GRACE") {
        limits.grace = duration(&v).map_err(|e| in_env("JAM_GRACE", e))?;
    }
    let mut threads = match from_env("JAM_THREADS") {
        Some(v) => count(&v).map_err(|e| in_env("JAM_THREADS", e))?,
        None => DEFAULT_THREADS,
    };
    let mut log = match from_env("JAM_LOG") {
        Some(v) => Level::parse(&v).ok_or_else(|| {
            Error::new(format!("JAM_LOG={v:?}: expected error, warn, notice, info, debug or off"))
        })?,
        None => Level::Info,
    };
    let mut zone_flag = None;

    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('l') | Long("listen") => listen = listen_addr(&text(p)?).map_err(in_flag("--listen"))?,
            Long("tz") => zone_flag = Some(text(p)?),
            Long("max-line") => limits.max_line = line_limit(&text(p)?).map_err(in_flag("--max-line"))?,
            Long("idle-timeout") => {
                limits.idle_timeout = duration(&text(p)?).map_err(in_flag("--idle-timeout"))?
            }
            Long("line-timeout") => {
                limits.line_timeout = duration(&text(p)?).map_err(in_flag("--line-timeout"))?
            }
            Long("max-connections") => {
                limits.max_connections = count(&text(p)?).map_err(in_flag("--max-connections"))?
            }
            Long("grace") => limits.grace = duration(&text(p)?).map_err(in_flag("--grace"))?,
            Long("threads") => threads = count(&text(p)?).map_err(in_flag("--threads"))?,
            Short('q') | Long("quiet") => log = log.min(Level::Notice),
            Short('h') | Long("help") => return Ok(Command::Help(serve_help())),
            other => return Err(usage(other.unexpected())),
        }
    }
    let config = Config { listen, zone_flag, zone_env: env("TZ"), limits, threads };
    Ok(Command::Serve { config, log })
}

fn parse_query(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = QueryArgs {
        target: Target::default(),
        count: 1,
        interval: Duration::from_secs(1),
        timeout: client::DEFAULT_QUERY_TIMEOUT,
        reconnect: false,
    };
    let mut target = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('n') | Long("count") => args.count = requests(&text(p)?).map_err(in_flag("--count"))?,
            Short('r') | Long("reconnect") => args.reconnect = true,
            Short('i') | Long("interval") => {
                args.interval = duration_or_zero(&text(p)?).map_err(in_flag("--interval"))?
            }
            Short('t') | Long("timeout") => {
                args.timeout = duration(&text(p)?).map_err(in_flag("--timeout"))?
            }
            Short('h') | Long("help") => return Ok(Command::Help(query_help())),
            Value(v) if target.is_none() => target = Some(Target::parse(&v.string().map_err(usage)?)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = target.unwrap_or_default();
    Ok(Command::Query(args))
}

fn parse_probe(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args =
        ProbeArgs { target: Target::default(), timeout: client::DEFAULT_PROBE_TIMEOUT, verbose: false };
    let mut target = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('t') | Long("timeout") => {
                args.timeout = duration(&text(p)?).map_err(in_flag("--timeout"))?
            }
            Short('v') | Long("verbose") => args.verbose = true,
            Short('h') | Long("help") => return Ok(Command::Help(probe_help())),
            Value(v) if target.is_none() => target = Some(Target::parse(&v.string().map_err(usage)?)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = target.unwrap_or_default();
    Ok(Command::Probe(args))
}

fn parse_lab(p: &mut lexopt::Parser, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, Error> {
    let mut args = LabArgs {
        port: DEFAULT_PORT,
        rounds: 3,
        interval: Duration::from_secs(1),
        zone_flag: None,
        zone_env: env("TZ"),
    };
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('p') | Long("port") => {
                args.port = text(p)?.parse().map_err(|_| Error::new("--port: expected a port number"))?
            }
            Short('n') | Long("rounds") => {
                args.rounds = count(&text(p)?).map_err(in_flag("--rounds"))? as u64
            }
            Short('i') | Long("interval") => {
                args.interval = duration_or_zero(&text(p)?).map_err(in_flag("--interval"))?
            }
            Long("tz") => args.zone_flag = Some(text(p)?),
            Short('h') | Long("help") => return Ok(Command::Help(lab_help())),
            other => return Err(usage(other.unexpected())),
        }
    }
    Ok(Command::Lab(args))
}

fn parse_bench(p: &mut lexopt::Parser) -> Result<Command, Error> {
    let mut args = BenchArgs {
        target: Target::default(),
        mode: Mode::RequestResponse,
        connections: 64,
        duration: Duration::from_secs(5),
        depth: 32,
        threads: 1,
        request: "TIME".into(),
        expect: None,
        json: false,
        server_pid: None,
    };
    let mut target = None;
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Short('m') | Long("mode") => {
                let m = text(p)?;
                args.mode = Mode::parse(&m).ok_or_else(|| {
                    Error::new(format!("--mode: {m:?}: expected rr, pipeline, churn or idle"))
                })?;
            }
            Short('c') | Long("connections") => {
                args.connections = count(&text(p)?).map_err(in_flag("--connections"))?
            }
            Short('d') | Long("duration") => {
                args.duration = duration(&text(p)?).map_err(in_flag("--duration"))?
            }
            Long("depth") => args.depth = count(&text(p)?).map_err(in_flag("--depth"))?,
            Long("threads") => args.threads = count(&text(p)?).map_err(in_flag("--threads"))?,
            Long("request") => args.request = text(p)?,
            Long("expect") => args.expect = Some(text(p)?),
            Long("server-pid") => {
                args.server_pid =
                    Some(text(p)?.parse().map_err(|_| Error::new("--server-pid: expected a PID"))?)
            }
            Long("json") => args.json = true,
            Short('h') | Long("help") => return Ok(Command::Help(bench_help())),
            Value(v) if target.is_none() => target = Some(Target::parse(&v.string().map_err(usage)?)?),
            other => return Err(usage(other.unexpected())),
        }
    }
    args.target = target.unwrap_or_default();
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
        return Err(Error::new("jam wire needs at least two ports to switch between"));
    }
    Ok(Command::Wire(args))
}

fn text(p: &mut lexopt::Parser) -> Result<String, Error> {
    p.value().map_err(usage)?.string().map_err(usage)
}

fn in_flag(flag: &'static str) -> impl Fn(String) -> Error {
    move |why| Error::new(format!("{flag}: {why}"))
}

fn in_env(var: &str, why: String) -> Error {
    Error::new(format!("environment variable {var}: {why}"))
}

/// `ADDR:PORT`, `[IPv6]:PORT`, or a bare port (on all IPv4 addresses).
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.parse().map_err(|_| format!("{s:?} is not an address such as 0.0.0.0:45000 or [::]:45000"))
}

/// A whole number, 0 included.
fn requests(s: &str) -> Result<u64, String> {
    s.parse::<u64>().map_err(|_| format!("{s:?} is not a whole number"))
}

/// A whole number of at least 1.
pub fn count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{s:?} is not a whole number of at least 1"))
}

fn line_limit(s: &str) -> Result<usize, String> {
    let n = count(s)?;
    if n < MIN_MAX_LINE {
        return Err(format!("{n} is too small: TIME plus CR LF needs {MIN_MAX_LINE} bytes"));
    }
    Ok(n)
}

/// A span of time greater than zero: seconds (`30`) or a span such as `500ms`, `30s`, `5m`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
}

fn duration_or_zero(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a span of time such as 30, 500ms, 30s or 5m");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let span: jiff::SignedDuration = s.parse().map_err(|_| bad())?;
    Duration::try_from(span).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, Error> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
        parse(args.iter().map(OsString::from), &lookup)
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> (Config, Level) {
        match parse_with(args, env).unwrap() {
            Command::Serve { config, log } => (config, log),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn serve_defaults() {
        let (c, log) = serve(&["serve"], &[]);
        assert_eq!(c.listen, "0.0.0.0:45000".parse().unwrap());
        assert_eq!(c.limits, Limits::default());
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
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
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
        assert_eq!(c.limits.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!((log, c.zone_flag.as_deref()), (Level::Notice, Some("UTC")));
    }

    #[test]
    fn durations_take_seconds_or_spans() {
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "-5s", "soon", ""] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
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
}
