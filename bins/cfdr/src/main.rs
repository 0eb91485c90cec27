//! cfdr: one front command for the cfdr tools, for people who expect one
//! tool (as git or cargo): `cfdr backup ...` runs `cfdr-backup ...`. The
//! cfdr-* binaries stay as they are for cron and `archive_command`.
// Binaries own the terminal: printing is their job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;

use std::process::ExitCode;

use cli::Action;
use commands::Error;

fn main() -> ExitCode {
    let error = match cli::parse(std::env::args_os().skip(1)) {
        Action::List => {
            print!("{}", commands::listing());
            return ExitCode::SUCCESS;
        }
        Action::Version => {
            println!("cfdr {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Action::Usage => {
            eprint!("{}", commands::listing());
            return ExitCode::from(2);
        }
        Action::Run { command, args } => commands::run(&command, args),
        Action::Bad(message) => Error::Usage(message),
    };
    eprintln!("cfdr: {error}");
    ExitCode::from(2)
}
