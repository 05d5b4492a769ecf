//! Command line of the `ws-gateway` binary.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ws-gateway", version, about = "Herald's WebSocket gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve WebSockets and the health endpoints (the default).
    Serve,
    /// Print a JWT for a user, signed with the configured secret (development and tests).
    Token {
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}
