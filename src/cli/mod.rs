//! The `sipstamp` command line: `run`, `check-config`, `inspect` and `session-id`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

mod inspect;

/// SIP proxy sidecar that stamps call, session and conversation identifiers into inbound
/// INVITEs.
#[derive(Debug, Parser)]
#[command(name = "sipstamp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground.
    Run {
        /// Configuration file; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format, overriding `log.format` in the configuration.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Validate a configuration file and report every problem with its key.
    CheckConfig {
        /// The configuration file to check.
        file: PathBuf,
    },
    /// Print, per SIP message in FILE, what the proxy would do, as one JSON object per line.
    /// Opens no socket and touches no store.
    Inspect {
        /// Configuration file; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address the messages are taken to come from.
        #[arg(long, default_value = "192.0.2.1:5060")]
        source: std::net::SocketAddr,
        /// Treat the source as a trusted peer.
        #[arg(long)]
        trusted: bool,
        /// Transport the messages are taken to arrive on.
        #[arg(long, value_enum, default_value = "udp")]
        transport: TransportArg,
        /// File with raw SIP messages, one after another (Content-Length frames them).
        file: PathBuf,
    },
    /// Print the sessionid a caller number has in a release, for data-subject requests.
    SessionId {
        #[arg(long)]
        config: PathBuf,
        /// Instance id of the release.
        #[arg(long)]
        instance: String,
        /// Trunk whose numbering plan applies to a number written without `+`.
        #[arg(long)]
        trunk: Option<String>,
        /// The caller's number or SIP user id.
        number: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    Udp,
    Tcp,
}

/// Runs the parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run { config, log_format } => crate::server::run(config.as_deref(), log_format),
        Command::CheckConfig { file } => check_config(&file),
        Command::Inspect {
            config,
            source,
            trusted,
            transport,
            file,
        } => inspect::run(config.as_deref(), source, trusted, transport, &file),
        Command::SessionId {
            config,
            instance,
            trunk,
            number,
        } => session_id(&config, &instance, trunk.as_deref(), &number),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match Config::load(Some(file)) {
        Ok(_) => {
            println!("{}: valid", file.display());
            ExitCode::SUCCESS
        }
        Err(crate::config::ConfigError::Invalid { origin, problems }) => {
            eprintln!("{origin}: {} problem(s)", problems.len());
            for problem in problems {
                eprintln!("  {problem}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn session_id(
    config: &std::path::Path,
    instance: &str,
    trunk: Option<&str>,
    number: &str,
) -> ExitCode {
    let config = match Config::load(Some(config)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    crate::identity::warm_up();
    match crate::session_id_command(&config, instance, number, trunk) {
        Ok(sessionid) => {
            println!("{sessionid}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("session-id failed: {error}");
            ExitCode::FAILURE
        }
    }
}
