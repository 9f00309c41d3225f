//! The `jam` binary: parses the command line and dispatches. Everything else is in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use jam::cli::{self, Command};
use jam::{bench, check, client, init, lab, server, talk, wire};

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // The kernel starts /init with no arguments: as PID 1, jam is the appliance's init.
    let parsed =
        if args.is_empty() && std::process::id() == 1 { Ok(Command::Init) } else { cli::parse(args, &env) };
    // The one place an error is printed, and the one place the exit status is decided.
    match parsed.and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.printed() {
                eprintln!("jam: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<(), jam::Error> {
    match command {
        Command::Help(text) => jam::print(&text),
        Command::Serve(config) => server::run(config),
        Command::Query(args) => client::query(&args),
        Command::Probe(args) => client::probe(&args),
        Command::Check(args) => check::run(&args),
        Command::Talk(args) => talk::run(&args),
        Command::Lab(args) => lab::run(&args),
        Command::Wire(args) => wire::run(&args),
        Command::Init => init::run(),
        Command::Bench(args) => bench::run(&args),
    }
}
