//! Command line of the `ingest-api` binary.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ingest-api", version, about = "Herald's producer API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Exit 0 when this service's /readyz on 127.0.0.1:`http.port` answers 200
    /// (container healthchecks: the image has no shell or curl).
    Healthcheck,
    /// Manage producer API keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once on stdout; only its hash is stored.
    Create {
        #[arg(long)]
        name: String,
        /// Also allow the admin endpoints (dead letters).
        #[arg(long)]
        admin: bool,
        /// When an active key has this name, say so and create nothing
        /// (exit 0): for set-up scripts that run on every start.
        #[arg(long)]
        if_absent: bool,
    },
    /// Revoke the active key with this name; it stops working at once.
    Revoke { name: String },
}
