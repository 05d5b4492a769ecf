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
    /// Exit 0 when this service's /readyz on 127.0.0.1:`http.port` answers 200
    /// (container healthchecks: the image has no shell or curl).
    Healthcheck,
    /// Print a JWT for a user, signed with the configured secret (development and tests).
    Token {
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}
