//! Command line of the `stream-worker` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use uuid::Uuid;

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
    /// Exit 0 when this service's /readyz on 127.0.0.1:`http.port` answers 200
    /// (container healthchecks: the image has no shell or curl).
    Healthcheck,
    /// Inspect and replay dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print dead letters as JSON lines, newest first.
    List {
        /// Include the ones already replayed.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Append dead letters to their stream again.
    Replay {
        /// The dead letter to replay (its `id` in `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<Uuid>,
        /// Every dead letter not replayed yet.
        #[arg(long)]
        all: bool,
        /// A corrected payload (the notification's JSON) to replay instead of the stored one.
        #[arg(long, conflicts_with = "all")]
        payload_file: Option<PathBuf>,
    },
}
