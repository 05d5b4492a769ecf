//! Command line of the `ingest-api` binary.

use clap::{Parser, Subcommand};
use platform::rate::Rate;
use platform::storage::api_keys::Scopes;

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
        /// Every scope (same as `--scope notify,preferences,templates,dlq,admin`).
        #[arg(long, conflicts_with = "scope")]
        admin: bool,
        /// What the key may do, comma-separated: notify, preferences
        /// (the default: both), templates, dlq, admin.
        #[arg(long, value_parser = parse_scopes)]
        scope: Option<Scopes>,
        /// The key addresses only user ids `<TENANT>:...` (notify and
        /// preferences scopes only).
        #[arg(long)]
        tenant: Option<String>,
        /// The key's rate in notifications (a batch counts its items), e.g.
        /// 500/s or 30000/min, shared by every replica; 0: no limit.
        /// Default: `ingest.key_rate_per_sec`.
        #[arg(long, value_parser = Rate::parse_per_sec)]
        rate: Option<f64>,
        /// Notifications the key may send at once. Default: `ingest.key_burst`.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
        burst: Option<u32>,
        /// When an active key has this name, say so and create nothing
        /// (exit 0): for set-up scripts that run on every start.
        #[arg(long)]
        if_absent: bool,
    },
    /// Revoke the active key with this name; it stops working at once.
    Revoke { name: String },
}

fn parse_scopes(list: &str) -> Result<Scopes, String> {
    Scopes::parse_list(list).map_err(|err| err.to_string())
}
