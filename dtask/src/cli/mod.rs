//! The `dtask` command-line tool (feature `cli`): every queue's counts, jobs by state, one
//! job, dead-job repairs, purge, pause and resume, cancel, workers. Built on the admin API
//! ([`crate::Queue`]), so what it shows and does is what a program using dtask can show and do.
//!
//! [`run`] is the whole tool, writing to any output: the `dtask` binary calls it with the
//! process's arguments and stdout, and tests call it in-process.

mod args;
mod commands;
mod render;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line is not one the tool understands (clap's message says how to fix it).
    #[error("{0}")]
    Usage(String),
    /// The command was understood but refused as given (a purge without `--yes`, say).
    #[error("{0}")]
    Refused(String),
    /// dtask or Redis failed.
    #[error(transparent)]
    Dtask(#[from] crate::Error),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The process exit code for this error: 2 for a command line the tool does not
    /// understand, 1 for every other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Runs the tool with `args` (the program's name first, as `std::env::args_os` gives them),
/// writing what it prints to `out`. `--help` and `--version` print to `out` and succeed.
///
/// ```no_run
/// # async fn demo() -> Result<(), dtask::cli::CliError> {
/// let mut out = Vec::new();
/// dtask::cli::run(["dtask", "--url", "redis://127.0.0.1:6379", "queues"], &mut out).await?;
/// print!("{}", String::from_utf8_lossy(&out));
/// # Ok(())
/// # }
/// ```
pub async fn run<I, T>(args: I, out: &mut dyn Write) -> Result<(), CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                write!(out, "{error}")?;
                return Ok(());
            }
            let message = error.render().to_string();
            return Err(CliError::Usage(message.trim_end().to_owned()));
        }
    };
    let mut builder = crate::Client::builder(&cli.url).prefix(&cli.prefix);
    if let Some(replica) = &cli.read_replica {
        builder = builder.read_replica(replica);
    }
    for (queue, count) in &cli.partitions {
        builder = builder.partitions(queue, *count);
    }
    let client = builder.connect().await?;
    match commands::run(&client, cli.command, out).await {
        // The reader went away (`dtask jobs .. | head`): nothing is wrong.
        Err(CliError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
