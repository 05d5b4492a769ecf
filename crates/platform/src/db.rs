//! The PostgreSQL pool (diesel-async on deadpool, with explicit timeouts),
//! connections with TLS as the URL's `sslmode` asks, start-up waiting with
//! backoff, and migrations run under a transaction's advisory lock so two
//! processes migrating at once cannot interleave, even through a pooler.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use diesel::sql_types::BigInt;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use secrecy::ExposeSecret;

use crate::settings::DatabaseSettings;
use crate::tls::{self, TlsFiles, Verify};

pub use diesel_async::AsyncPgConnection;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Arbitrary constant naming Herald's migration lock ("HERALD" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x4845_5241_4C44;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot build the database pool: {0}")]
    Build(String),
    #[error("database.url: {0}")]
    Url(String),
    #[error("database TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("database unavailable: {0}")]
    Pool(#[from] PoolError),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    /// A concurrent transaction changed what this one had counted on; it
    /// was rolled back and trying again finds the new state.
    #[error("concurrent change: {0}; try again")]
    Conflict(&'static str),
}

impl DbError {
    /// The database refused the data itself (a constraint violation):
    /// retrying cannot fix it. diesel does not expose the SQLSTATE of other
    /// errors, so those (deadlocks, timeouts, lost connections) count as
    /// transient: retried, never dead-lettered.
    pub fn is_refusal(&self) -> bool {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        matches!(
            self,
            DbError::Query(Error::DatabaseError(
                Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::NotNullViolation
                    | Kind::CheckViolation
                    | Kind::RestrictViolation
                    | Kind::ExclusionViolation,
                _
            ))
        )
    }
}

/// How Herald opens a PostgreSQL connection: the URL (without the TLS
/// parameters tokio-postgres does not know) and the TLS it asks for.
///
/// `sslmode` is libpq's: `disable`; `allow` and `prefer` (the default)
/// encrypt when the server offers it; `require` encrypts or fails;
/// `verify-ca` also checks the certificate chains to a trusted CA;
/// `verify-full` also checks it names the host. The CA is
/// `database.ca_file` (else `sslrootcert` in the URL, else the system's
/// roots); as in libpq, `require` with a CA file verifies like `verify-ca`.
/// `database.client_cert_file`/`client_key_file` (or `sslcert`/`sslkey`)
/// answer servers that ask for a client certificate.
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Connector {
    /// The connector for `settings.url`.
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Self, DbError> {
        Self::new(settings.url.expose_secret(), settings)
    }

    /// The connector for `url` with `settings`' TLS files (migrations use
    /// their own URL).
    pub fn new(url: &str, settings: &DatabaseSettings) -> Result<Self, DbError> {
        use tokio_postgres::config::SslMode;
        let (url, params) = split_tls_params(url);
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map_or("", |(_, value)| value.as_str())
        };
        let file = |setting: &str, name: &str| -> String {
            if setting.is_empty() {
                param(name).to_owned()
            } else {
                setting.to_owned()
            }
        };
        let ca_file = file(&settings.ca_file, "sslrootcert");
        let cert_file = file(&settings.client_cert_file, "sslcert");
        let key_file = file(&settings.client_key_file, "sslkey");
        let has_ca = !ca_file.is_empty();
        let (mode, verify) = match param("sslmode") {
            "disable" => (SslMode::Disable, Verify::Nothing),
            "" | "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
            "require" if has_ca => (SslMode::Require, Verify::Chain),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::Full),
            other => {
                return Err(DbError::Url(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err: tokio_postgres::Error| DbError::Url(err.to_string()))?;
        config.ssl_mode(mode);
        let files = TlsFiles {
            ca_key: "database.ca_file",
            ca_file: &ca_file,
            cert_file: &cert_file,
            key_file: &key_file,
        };
        let tls = tls::client_config(verify, files)?;
        Ok(Self {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    /// Opens one connection.
    pub async fn connect(&self) -> diesel::ConnectionResult<AsyncPgConnection> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|err| diesel::ConnectionError::BadConnection(err.to_string()))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// The URL without libpq's TLS parameters, and those parameters.
fn split_tls_params(url: &str) -> (String, Vec<(String, String)>) {
    const TLS_PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if TLS_PARAMS.contains(&key) {
            tls.push((key.to_owned(), value.to_owned()));
        } else {
            kept.push(pair);
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, tls)
}

/// How PostgreSQL plans the statements of a pool's connections. diesel
/// prepares each statement once per connection and keeps it; what differs
/// is whether its plan is kept too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Planned again at every execution (`plan_cache_mode =
    /// force_custom_plan`), from the tables' current sizes and the actual
    /// parameters. For statements whose best plan depends on them: rounds
    /// keyed by arrays of ids and users, joins with `unnest`, listings for
    /// operators. Left to itself PostgreSQL switches a prepared statement
    /// to a generic plan after five executions and keeps it for the
    /// connection's life, and a generic plan made while `notifications`
    /// was nearly empty (a new installation, a fresh benchmark database) is
    /// a sequential scan: `id = ANY($1)` then read the whole table every
    /// round and the worker slowed down as the table grew, until an ANALYZE
    /// happened to invalidate the plan (measured: 78% of the machine's CPU
    /// in PostgreSQL evaluating `ExecEvalScalarArrayOp`/`uuid_eq` during the
    /// benchmark's throughput hold).
    EachExecution,
    /// Planned once per connection (`plan_cache_mode = force_generic_plan`)
    /// with sequential scans priced out (`enable_seqscan = off`), so that a
    /// plan made while a table was empty is an index scan all the same and
    /// stays right as the table grows. For services whose every statement
    /// finds one user's rows through an index (the gateway: a state change,
    /// a page of the inbox, a resume): planning them again at each
    /// execution was about a third of PostgreSQL's CPU under the
    /// `state-churn` benchmark. A statement with no index to use still
    /// scans the table.
    OncePerConnection,
}

impl Planning {
    /// The session settings that make it so.
    fn setup(self) -> &'static str {
        match self {
            Planning::EachExecution => "SET plan_cache_mode = force_custom_plan",
            Planning::OncePerConnection => {
                "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off"
            }
        }
    }
}

/// Builds the pool; connections are opened lazily and re-opened after an
/// outage, and plan their statements as `planning` says.
pub fn pool(settings: &DatabaseSettings, planning: Planning) -> Result<DbPool, DbError> {
    // `Fast`: a pooled connection is checked for a left-open transaction and
    // for having failed before, not with a `SELECT 1` round trip on every
    // checkout (which cost the worker two round trips per round). A
    // connection that broke since is found on first use: that round or
    // request fails like any database error (503 / retried) and the
    // connection is dropped.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let random_page_cost = settings.random_page_cost;
    let connector = Arc::new(Connector::from_settings(settings)?);
    config.custom_setup = Box::new(move |_url| {
        let connector = Arc::clone(&connector);
        async move { establish(&connector, planning, random_page_cost).await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(deadpool::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
        .wait_timeout(Some(Duration::from_millis(settings.acquire_timeout_ms)))
        .recycle_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
        .build()
        .map_err(|err| DbError::Build(err.to_string()))
}

/// Opens a connection with Herald's session settings: the [`Planning`] of
/// its statements, and `random_page_cost` (`database.random_page_cost`, 0:
/// the server's): at
/// PostgreSQL's default of 4 a lookup of a round's 256 users in a table of
/// 1,000-50,000 rows is planned as a sequential scan (a hash join for the
/// counter update) whenever the statistics predate the table's growth, and
/// runs 7-10x slower than the index scan chosen at 1.1.
async fn establish(
    connector: &Connector,
    planning: Planning,
    random_page_cost: f64,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = connector.connect().await?;
    let mut setup = String::from(planning.setup());
    if random_page_cost > 0.0 {
        // A finite, non-negative f64 (validated with the settings) prints as a plain number.
        setup.push_str(&format!("; SET random_page_cost = {random_page_cost}"));
    }
    conn.batch_execute(&setup)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

/// One cheap round trip: used by `/readyz`.
pub async fn ping(pool: &DbPool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// Waits until PostgreSQL answers, logging each failure; gives up never.
/// At start a service would rather wait for its database than crash-loop.
pub async fn wait_until_reachable(pool: &DbPool) {
    let attempt = || ping(pool);
    let _ = attempt
        .retry(crate::retry::backoff())
        .notify(|err, delay| {
            tracing::warn!(%err, retry_in = ?delay, "PostgreSQL not reachable yet");
        })
        .await;
}

/// Applies pending migrations, holding an advisory lock for the duration,
/// and returns the versions applied.
///
/// The lock is transaction-scoped (`pg_advisory_xact_lock` inside an open
/// transaction on a connection of its own): behind a pooler in transaction
/// mode that transaction keeps its one server connection, and the lock
/// ends with it whatever happens (commit, error, a killed process). A
/// session lock could be taken on one server connection and released on
/// another, and the next migration would wait forever.
///
/// Must run on a multi-thread tokio runtime: diesel-async's harness uses
/// `block_in_place` (here on a blocking thread of its own).
pub async fn run_migrations(settings: &DatabaseSettings) -> Result<Vec<String>, DbError> {
    let connector = Connector::new(settings.migration_url().expose_secret(), settings)?;
    let mut lock_conn = connector.connect().await?;
    diesel::sql_query("BEGIN").execute(&mut lock_conn).await?;
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut lock_conn)
        .await?;
    let conn = connector.connect().await?;
    // The harness drives the async connection with `block_in_place`; on a
    // blocking thread of its own it cannot stall the caller's task (and
    // whatever else that task is joined with).
    let applied = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|err| DbError::Migration(err.to_string()))
    })
    .await
    .unwrap_or_else(|err| Err(DbError::Migration(format!("migration task failed: {err}"))));
    // Ends the transaction, and with it the lock.
    diesel::sql_query("COMMIT").execute(&mut lock_conn).await?;
    applied
}

/// Applies the migrations up to and including `last` (a version such as
/// `"2026-12-04-000011"`), none after: for tests of what a later one does
/// to data the earlier schema held.
#[cfg(feature = "test-support")]
pub async fn run_migrations_through(
    settings: &DatabaseSettings,
    last: &str,
) -> Result<(), DbError> {
    let conn = Connector::new(settings.migration_url().expose_secret(), settings)?
        .connect()
        .await?;
    let last = last.replace('-', "");
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let version = |m: &dyn diesel::migration::Migration<diesel::pg::Pg>| {
            m.name().version().to_string().replace('-', "")
        };
        // Creates the table of applied migrations, on a fresh database.
        let mut migrations = harness
            .pending_migrations(MIGRATIONS)
            .map_err(|err| DbError::Migration(err.to_string()))?;
        migrations.sort_by_key(|m| version(&**m));
        for migration in migrations {
            if version(&*migration) > last {
                break;
            }
            harness
                .run_migration(&*migration)
                .map_err(|err| DbError::Migration(err.to_string()))?;
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|err| Err(DbError::Migration(format!("migration task failed: {err}"))))
}
