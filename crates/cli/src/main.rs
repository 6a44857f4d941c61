//! `ebs-snapper`: the command line. Parses arguments, sets up logging, runs one command, and turns
//! its result into output and an exit status.

mod accounts;
mod args;
mod configure;
mod deploy;
mod error;
mod jobs;
mod output;
mod status;

use std::process::ExitCode;

use clap::Parser;
use ebs_snapper_aws::Aws;
use ebs_snapper_core::Job;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own message without its usage block, folded into one readable line.
            let rendered = e.to_string();
            let message: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let message = message.join(" ");
            eprintln!("error: {}", CliError::Usage(message.trim_start_matches("error: ").to_string()));
            return ExitCode::from(2);
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let aws = Aws::load(Some(&cli.tool_region)).await;
    match &cli.command {
        Command::Snapshot(args) => jobs::run(&aws, &cli.tool_region, Job::Snapshot, args).await,
        Command::Clean(args) => jobs::run(&aws, &cli.tool_region, Job::Clean, args).await,
        Command::Replication(args) => jobs::run(&aws, &cli.tool_region, Job::Replication, args).await,
        Command::Deploy(args) => deploy::run(&aws, &cli.tool_region, args).await,
        Command::Status(args) => status::run(&aws, &cli.tool_region, args).await,
        Command::Drill(args) => jobs::drill(&aws, &cli.tool_region, args).await,
        Command::Configure(args) => match configure::run(&aws, &cli.tool_region, args).await? {
            configure::Outcome::Done => Ok(ExitCode::SUCCESS),
            configure::Outcome::NotFound => Ok(ExitCode::from(1)),
        },
    }
}

/// Logs go to stderr: warnings by default, `-V` info, `-VV` debug; `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,ebs_snapper=info,ebs_snapper_core=info,ebs_snapper_aws=info",
        _ => "info,ebs_snapper=debug,ebs_snapper_core=debug,ebs_snapper_aws=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}
