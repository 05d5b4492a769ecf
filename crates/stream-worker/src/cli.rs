//! Command line of the `stream-worker` binary.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "stream-worker", version, about = "Herald's stream consumer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the streams (the default).
    Run,
    /// Apply pending database migrations and exit (safe to run concurrently).
    Migrate,
}
