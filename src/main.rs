//! The `jam` binary: parses the command line and dispatches. Everything else is in the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use jam::cli::{self, Command};

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // The kernel starts /init with no arguments: as PID 1, jam is the appliance's init.
    let parsed =
        if args.is_empty() && std::process::id() == 1 { Ok(Command::Init) } else { cli::parse(args, &env) };
    // The one place an error is printed, and the one place the exit status is decided.
    match parsed.and_then(cli::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.printed() {
                eprintln!("jam: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
