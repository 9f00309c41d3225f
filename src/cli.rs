//! The top of the tree: the table of commands, `jam --help`, and the dispatch.
//!
//! Each command lives in its own room, with its arguments, help text and parser beside the code
//! that runs it; this table says which words reach which room. Adding a command is its room and
//! one row here. Parsing touches neither the process's arguments nor its environment directly:
//! both are passed in, so every rule is a unit test. lexopt (ripgrep's parser) keeps this small
//! in the binary; the helpers every room uses are in [`crate::settings`].

use std::ffi::OsString;

use lexopt::prelude::*;

use crate::Error;
use crate::machines::{init, wire};
use crate::server::{self, config};
use crate::settings::{Env, Parsed, usage};
use crate::tools::{bench, capture, check, client, grade, lab, show, talk};

/// What to do, fully parsed.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `jam serve`.
    Serve(server::Config),
    /// `jam query`.
    Query(client::QueryArgs),
    /// `jam probe`.
    Probe(client::ProbeArgs),
    /// `jam check`.
    Check(check::CheckArgs),
    /// `jam grade`.
    Grade(grade::GradeArgs),
    /// `jam talk`.
    Talk(talk::TalkArgs),
    /// `jam lab`.
    Lab(lab::LabArgs),
    /// `jam wire`.
    Wire(wire::WireArgs),
    /// `jam bench`.
    Bench(bench::BenchArgs),
    /// `jam show`.
    Show(show::ShowArgs),
    /// `jam capture`.
    Capture(capture::CaptureArgs),
    /// Run as PID 1 of the appliance.
    Init,
    /// Print this text to stdout and exit 0.
    Help(String),
}

/// One command: the word that runs it, the line `jam --help` gives it, and its room's help and
/// parser.
pub struct Entry {
    /// The command's word: `jam serve`.
    pub name: &'static str,
    /// Its line under "Commands:" in `jam --help`.
    pub summary: &'static str,
    /// Its `--help` text.
    pub help: fn() -> String,
    /// Its parser, given the arguments after the command's word.
    pub parse: fn(&mut lexopt::Parser, Env) -> Result<Parsed<Command>, Error>,
    /// Arguments it cannot run without (`jam talk HOST`), for tests that parse its defaults.
    pub needs: &'static [&'static str],
}

/// Every command, in the order `jam --help` lists them.
pub const COMMANDS: [Entry; 12] = [
    Entry {
        name: "serve",
        summary: "run the time server: TIME + CR LF gets JAM hh:mm:ss + CR LF",
        help: config::help,
        parse: |p, env| Ok(config::parse(p, env)?.map(Command::Serve)),
        needs: &[],
    },
    Entry {
        name: "query",
        summary: "ask a server for the time, like printf 'TIME\\r\\n' | nc HOST 45000",
        help: client::query_help,
        parse: |p, _| Ok(client::parse_query(p)?.map(Command::Query)),
        needs: &[],
    },
    Entry {
        name: "probe",
        summary: "health check for containers: exit 0 if a server answers, 1 if not",
        help: client::probe_help,
        parse: |p, _| Ok(client::parse_probe(p)?.map(Command::Probe)),
        needs: &[],
    },
    Entry {
        name: "check",
        summary: "grade any time server against the lab sheet: a report card, PASS/FAIL per check",
        help: check::help,
        parse: |p, env| Ok(check::parse(p, env)?.map(Command::Check)),
        needs: &[],
    },
    Entry {
        name: "grade",
        summary: "grade a class: each student's server in a sandbox, one gradebook (CSV, JSON, HTML)",
        help: grade::help,
        parse: |p, env| Ok(grade::parse(p, env)?.map(Command::Grade)),
        needs: &["alice"],
    },
    Entry {
        name: "talk",
        summary: "send raw bytes or typed lines to any server and show what comes back, like nc -C",
        help: talk::help,
        parse: |p, _| Ok(talk::parse(p)?.map(Command::Talk)),
        needs: &["mesin1"],
    },
    Entry {
        name: "capture",
        summary: "capture the lab's TCP segments on this machine, live and into a pcap file (CAP_NET_RAW)",
        help: capture::help,
        parse: |p, _| Ok(capture::parse(p)?.map(Command::Capture)),
        needs: &[],
    },
    Entry {
        name: "show",
        summary: "a capture (pcap, pcapng) in the sheet's Wireshark columns, a frame's detail, a flow diagram",
        help: show::help,
        parse: |p, _| Ok(show::parse(p)?.map(Command::Show)),
        needs: &["capture.pcap"],
    },
    Entry {
        name: "lab",
        summary: "the three-machine lab on 127.16.16.x: no root, no Docker",
        help: lab::help,
        parse: |p, env| Ok(lab::parse(p, env)?.map(Command::Lab)),
        needs: &[],
    },
    Entry {
        name: "bench",
        summary: "load generator: requests/s, latency, CPU per request; checks every reply",
        help: bench::help,
        parse: |p, _| Ok(bench::parse(p)?.map(Command::Bench)),
        needs: &[],
    },
    Entry {
        name: "init",
        summary: "PID 1 of the appliance VM (run as /init, it starts by itself)",
        help: init::help,
        parse: |p, _| Ok(crate::settings::no_arguments(p)?.map(|()| Command::Init)),
        needs: &[],
    },
    Entry {
        name: "wire",
        summary: "the network of deploy/netns: a switch with delay, jitter, loss and rate (root)",
        help: wire::help,
        parse: |p, _| Ok(wire::parse(p)?.map(Command::Wire)),
        needs: &["a", "b"],
    },
];

/// `jam --version`'s line.
pub fn version() -> String {
    format!("jam {}", env!("CARGO_PKG_VERSION"))
}

/// `jam --help`.
pub fn main_help() -> String {
    let commands: String = COMMANDS.iter().map(|c| format!("  {:<8}{}\n", c.name, c.summary)).collect();
    format!(
        "{}: the networking lab's TCP time server, client and health probe

Usage: jam <COMMAND> [OPTIONS]

Commands:
{commands}
Options:
  -h, --help      print help (also after a command: jam serve --help)
  -V, --version   print the version

Exit status: 0 success, 1 failure, 2 bad usage.
",
        version()
    )
}

/// The commands' words as a list for an error: "serve, query, ... or wire".
fn command_list() -> String {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    let (last, rest) = names.split_last().expect("commands");
    format!("{} or {last}", rest.join(", "))
}

/// Parses the arguments after the program name. `env` looks up an environment variable.
/// Every error is a usage error (exit status 2).
pub fn parse<I>(args: I, env: Env) -> Result<Command, Error>
where
    I: IntoIterator<Item = OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let word = match parser.next().map_err(usage)? {
        None => {
            return Err(Error::usage(format!("a command is needed: {} (see jam --help)", command_list())));
        }
        Some(Short('h') | Long("help")) => return Ok(Command::Help(main_help())),
        Some(Short('V') | Long("version")) => return Ok(Command::Help(version() + "\n")),
        Some(Value(v)) => v.string().map_err(usage)?,
        Some(other) => return Err(usage(other.unexpected())),
    };
    if word == "help" {
        return Ok(Command::Help(main_help()));
    }
    let Some(entry) = COMMANDS.iter().find(|c| c.name == word) else {
        return Err(Error::usage(format!(
            "unknown command {word:?}: expected {} (see jam --help)",
            command_list()
        )));
    };
    Ok(match (entry.parse)(&mut parser, env)? {
        Parsed::Run(command) => command,
        Parsed::Help => Command::Help((entry.help)()),
    })
}

/// Runs a parsed command: the one place that knows which room runs which.
pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Help(text) => crate::print(&text),
        Command::Serve(config) => server::run(config),
        Command::Query(args) => client::query(&args),
        Command::Probe(args) => client::probe(&args),
        Command::Check(args) => check::run(&args),
        Command::Grade(args) => grade::run(&args),
        Command::Talk(args) => talk::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Wire(args) => wire::run(&args),
        Command::Init => init::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Show(args) => show::run(&args),
        Command::Capture(args) => capture::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log::Level;
    use crate::server::Config;

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
        assert_eq!(
            (p.target, p.timeout, p.verbose),
            (client::Target::default(), Duration::from_secs(1), true)
        );
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
    const DESCRIBED: [&str; 7] = [
        "off",
        "8 per core, at most 16",
        "the system's zone, else UTC",
        "half of --max-connections",
        "the system's, else UTC",
        "a strict JAM hh:mm:ss",
        "every interface but loopback, cooked",
    ];

    #[test]
    fn every_default_in_the_help_is_the_codes_default() {
        // Every command in the table, with the arguments it cannot do without: a new command is
        // covered without editing this test.
        let helps = COMMANDS.iter().map(|c| (c.name, c.needs, (c.help)()));
        let mut checked = 0;
        for (name, needs, help) in helps {
            let base = [&[name][..], needs].concat();
            let with = |extra: &[&str], env: &[(&str, &str)]| {
                parse_with(&[&base[..], extra].concat(), env)
                    .unwrap_or_else(|e| panic!("{base:?} {extra:?}: {e}"))
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
}
