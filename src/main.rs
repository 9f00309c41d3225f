//! The `jam` binary: parses the command line and dispatches. Everything else is in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use jam::cli::{self, Command};
use jam::{bench, client, init, lab, log, server, wire};

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // The kernel starts /init with no arguments: as PID 1, jam is the appliance's init.
    let parsed =
        if args.is_empty() && std::process::id() == 1 { Ok(Command::Init) } else { cli::parse(args, &env) };
    let command = match parsed {
        Ok(command) => command,
        Err(e) => {
            eprintln!("jam: {e}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    let result = match command {
        Command::Help(text) => {
            print!("{text}");
            Ok(())
        }
        Command::Serve { config, log: level } => {
            log::set_level(level);
            server::run(config)
        }
        Command::Query(args) => client::query(&args),
        Command::Probe(args) => client::probe(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Wire(args) => wire::run(&args),
        Command::Init => init::run(),
        Command::Bench(args) => bench::run(&args).and_then(|report| {
            print!("{}", if args.json { report.json() + "\n" } else { report.text() });
            match report.errors {
                0 => Ok(()),
                n => Err(jam::Error::new(format!("{n} error(s): some replies were wrong or missing"))),
            }
        }),
    };
    // The one place an error is printed.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.print {
                eprintln!("jam: {e}");
            }
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
