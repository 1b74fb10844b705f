//! The `podnet` binary: parses arguments, runs one command, and alone chooses exit codes:
//! 0 ok, 1 errors (usage errors included), 2 only for "changes pending" / "drifted" under
//! `--detailed-exitcode` (docs/exit-codes.md).

use clap::Parser;
use podnet::cli::{Cli, Command};
use podnet::commands;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage(&e)),
    };
    let result = match &cli.command {
        Command::Check(a) => commands::check::run(a),
        Command::Fmt(a) => commands::fmt::run(a),
        Command::Lock(a) => commands::lock::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Apply(a) => commands::apply::run(a),
        Command::Status(a) => commands::status::run(a),
        Command::Teardown(a) => commands::teardown::run(a),
        Command::Watch(a) => commands::watch::run(a),
        Command::Import(a) => commands::import::run(a),
        Command::Lab(a) => commands::lab::run(a),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`podnet plan … | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                0
            } else {
                eprintln!("error: {e:#}");
                1
            }
        }
    };
    std::process::exit(code);
}

/// Prints clap's message and chooses its exit code: `--help` and `--version` go to standard
/// output and exit 0; a usage error goes to standard error and exits 1, never clap's 2,
/// which `--detailed-exitcode` reserves for "changes pending".
fn usage(e: &clap::Error) -> i32 {
    // Printing can only fail on a closed stream, and then there is no one to tell.
    let _ = e.print();
    if e.use_stderr() { 1 } else { 0 }
}
