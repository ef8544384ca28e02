use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sipstamp::cli::main(sipstamp::cli::Cli::parse())
}
