//! The identity provider's published keys (`auth.jwt_jwks_url`), fetched at
//! start, refreshed in the background as the answer's `Cache-Control`
//! allows, and refetched when a token names a key not seen yet (a rotation)
//! at most once per `auth.jwt_jwks_min_refresh_secs`, so tokens with made-up
//! `kid`s cannot turn the gateway into a load generator against the
//! provider.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use backon::Retryable;
use platform::settings::AuthSettings;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keys::KeySet;

/// A JWKS larger than this is refused (providers publish a few keys).
const MAX_JWKS_BYTES: usize = 1 << 20;
/// The longest a fetched key set is kept without asking again.
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot fetch the JWKS: {0}")]
    Fetch(#[from] reqwest::Error),
    #[error("the JWKS answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Document(String),
    #[error("cannot read auth.jwt_jwks_ca_file: {0}")]
    CaFile(String),
}

pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the keys were last asked for; held while asking, so concurrent
    /// lookups of an unknown `kid` make one request between them.
    fetched_at: tokio::sync::Mutex<Option<Instant>>,
    refresh: Duration,
    min_refresh: Duration,
}

impl RemoteJwks {
    pub fn new(auth: &AuthSettings) -> Result<Self, JwksError> {
        let mut client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent(concat!("herald-ws-gateway/", env!("CARGO_PKG_VERSION")));
        if !auth.jwt_jwks_ca_file.is_empty() {
            let pem = std::fs::read(&auth.jwt_jwks_ca_file)
                .map_err(|err| JwksError::CaFile(err.to_string()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|err| JwksError::CaFile(err.to_string()))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        let min_refresh = Duration::from_secs(auth.jwt_jwks_min_refresh_secs);
        Ok(Self {
            url: auth.jwt_jwks_url.clone(),
            client: client.build()?,
            keys: RwLock::default(),
            fetched_at: tokio::sync::Mutex::new(None),
            refresh: Duration::from_secs(auth.jwt_jwks_refresh_secs).max(min_refresh),
            min_refresh,
        })
    }

    /// The keys as last fetched.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .map(|keys| Arc::clone(&keys))
            .unwrap_or_default()
    }

    /// Fetches until the provider answers with a usable key set (start-up:
    /// the gateway is not ready without keys), retrying with backoff;
    /// returns when to refresh.
    pub async fn load(&self) -> Duration {
        let attempt = || async {
            let mut fetched_at = self.fetched_at.lock().await;
            *fetched_at = Some(Instant::now());
            self.fetch().await
        };
        attempt
            .retry(platform::retry::backoff())
            .notify(|err, delay| {
                tracing::warn!(%err, url = %self.url, retry_in = ?delay, "JWKS not loaded yet");
            })
            .await
            .unwrap_or(self.min_refresh)
    }

    /// A token named a key this set lacks: asks the provider again, unless
    /// that was done less than the minimum interval ago.
    pub async fn refetch_for_unknown_kid(&self) {
        let mut fetched_at = self.fetched_at.lock().await;
        if fetched_at.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return;
        }
        *fetched_at = Some(Instant::now());
        if let Err(err) = self.fetch().await {
            tracing::warn!(%err, url = %self.url, "JWKS refetch for an unknown kid failed");
        }
    }

    /// Refreshes in the background until `shutdown`: after the answer's
    /// max-age (else `auth.jwt_jwks_refresh_secs`), after the minimum
    /// interval when a fetch failed (the keys in hand stay in use).
    pub fn spawn_refresh(self: Arc<Self>, first: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut wait = first;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let mut fetched_at = self.fetched_at.lock().await;
                *fetched_at = Some(Instant::now());
                wait = match self.fetch().await {
                    Ok(next) => next,
                    Err(err) => {
                        tracing::warn!(%err, url = %self.url, "JWKS refresh failed; keeping the keys in hand");
                        self.min_refresh
                    }
                };
            }
        });
    }

    /// One request; replaces the keys and returns when to ask again.
    async fn fetch(&self) -> Result<Duration, JwksError> {
        let response = self.client.get(&self.url).send().await?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status()));
        }
        let next = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.refresh)
            .clamp(self.min_refresh, MAX_REFRESH.max(self.min_refresh));
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let body = response.bytes().await?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let (keys, skipped) = KeySet::from_jwks_json(&body).map_err(JwksError::Document)?;
        if keys.is_empty() {
            return Err(JwksError::Document(format!(
                "no usable signing key ({})",
                skipped.join("; ")
            )));
        }
        if !skipped.is_empty() {
            tracing::debug!(?skipped, "JWKS keys Herald cannot use");
        }
        tracing::info!(keys = keys.len(), url = %self.url, next_refresh = ?next, "JWKS loaded");
        if let Ok(mut current) = self.keys.write() {
            *current = Arc::new(keys);
        }
        Ok(next)
    }
}

/// The `max-age` of a `Cache-Control` value; `no-cache`/`no-store` count as 0
/// (the caller raises it to the minimum interval).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let directive = directive.to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            age = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_next_refresh() {
        assert_eq!(
            max_age("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(
            max_age("Max-Age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("public"), None);
    }
}
