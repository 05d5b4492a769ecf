//! Token verification: the signature against a key pinned to the token's
//! algorithm, then `exp` (required), `nbf`, `iss` and `aud` when configured,
//! the maximum lifetime, and the user id from the configured claim.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use platform::settings::AuthSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::jwks::RemoteJwks;
use super::keys::{Key, KeySet, Lookup, lookup};
use super::revoked::RevokedTokens;

/// The user a valid token names, and when the token expires.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub user_id: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The token's `jti`, by which it can be revoked.
    pub jti: Option<String>,
}

impl VerifiedToken {
    /// The monotonic instant at which the token expires.
    pub fn expires_at(&self) -> tokio::time::Instant {
        // Capped at a year: an absurd `exp` must not overflow the clock.
        let left = Duration::from_secs(self.exp.saturating_sub(unix_now()).min(365 * 24 * 3600));
        tokio::time::Instant::now() + left
    }
}

/// Verifies user tokens (and, with the HS256 secret, issues development ones).
pub struct TokenVerifier {
    /// The secret, a PEM key, a JWKS file: fixed for the process's life.
    keys: KeySet,
    remote: Option<Arc<RemoteJwks>>,
    /// Claims checks shared by every algorithm (`algorithms` set per key).
    validation: Validation,
    max_lifetime_secs: Option<u64>,
    user_claim: String,
    signing: Option<EncodingKey>,
    /// Tokens revoked by `jti`, refused until they expire.
    revoked: Option<Arc<RevokedTokens>>,
}

impl TokenVerifier {
    /// HS256 with one secret only: development tooling and tests.
    pub fn with_secret(secret: &SecretString, leeway_secs: u64) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut keys = KeySet::default();
        keys.push(Key::secret(bytes));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = leeway_secs;
        validation.validate_aud = false;
        Self {
            keys,
            remote: None,
            validation,
            max_lifetime_secs: None,
            user_claim: "sub".into(),
            signing: Some(EncodingKey::from_secret(bytes)),
            revoked: None,
        }
    }

    /// Also refuses the tokens `revoked` names.
    pub fn refusing(mut self, revoked: Arc<RevokedTokens>) -> Self {
        self.revoked = Some(revoked);
        self
    }

    /// Every key source the settings name. A JWKS URL is fetched before
    /// this returns (retried until it answers) and then refreshed in the
    /// background until `shutdown`.
    pub async fn from_settings(
        auth: &AuthSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut keys = KeySet::default();
        let secret = auth.jwt_secret.expose_secret().as_bytes();
        if !secret.is_empty() {
            keys.push(Key::secret(secret));
        }
        if !auth.jwt_public_key_file.is_empty() {
            let pem = read(&auth.jwt_public_key_file, "auth.jwt_public_key_file")?;
            let key = Key::from_pem(&pem)
                .map_err(|why| anyhow::anyhow!("auth.jwt_public_key_file: {why}"))?;
            keys.push(key);
        }
        if !auth.jwt_jwks_file.is_empty() {
            let json = read(&auth.jwt_jwks_file, "auth.jwt_jwks_file")?;
            let (set, skipped) = KeySet::from_jwks_json(&json)
                .map_err(|why| anyhow::anyhow!("auth.jwt_jwks_file: {why}"))?;
            if set.is_empty() {
                anyhow::bail!(
                    "auth.jwt_jwks_file: no usable signing key ({})",
                    skipped.join("; ")
                );
            }
            set.iter().cloned().for_each(|key| keys.push(key));
        }
        let remote = if auth.jwt_jwks_url.is_empty() {
            None
        } else {
            let remote = Arc::new(RemoteJwks::new(auth)?);
            let refresh_in = tokio::select! {
                refresh_in = remote.load() => refresh_in,
                () = shutdown.cancelled() => anyhow::bail!("stopped while loading the JWKS"),
            };
            Arc::clone(&remote).spawn_refresh(refresh_in, shutdown);
            Some(remote)
        };

        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp"];
        if !auth.jwt_issuer.is_empty() {
            validation.set_issuer(&[&auth.jwt_issuer]);
            required.push("iss");
        }
        if auth.jwt_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&auth.jwt_audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        validation.leeway = auth.jwt_leeway_secs;
        Ok(Self {
            keys,
            remote,
            validation,
            max_lifetime_secs: (auth.jwt_max_lifetime_secs > 0)
                .then_some(auth.jwt_max_lifetime_secs),
            user_claim: auth.jwt_user_claim.clone(),
            signing: (!secret.is_empty()).then(|| EncodingKey::from_secret(secret)),
            revoked: None,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let kid = header.kid.as_deref();
        let mut remote = self.remote.as_ref().map(|r| r.current());
        let mut found = self.select(remote.as_deref(), kid, header.alg);
        if matches!(found, Lookup::UnknownKid)
            && let Some(jwks) = &self.remote
        {
            // Perhaps the provider rotated its keys since the last fetch.
            jwks.refetch_for_unknown_kid().await;
            remote = Some(jwks.current());
            found = self.select(remote.as_deref(), kid, header.alg);
        }
        let keys = match found {
            Lookup::Found(keys) => keys,
            Lookup::UnknownKid => {
                return Err(AuthError::Invalid(format!(
                    "unknown key id {:?}",
                    kid.unwrap_or_default()
                )));
            }
            Lookup::AlgorithmMismatch => {
                return Err(AuthError::Invalid(format!(
                    "key {:?} does not verify {:?}",
                    kid.unwrap_or_default(),
                    header.alg
                )));
            }
            Lookup::NoKeyForAlgorithm => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {:?} is not accepted",
                    header.alg
                )));
            }
        };
        let mut refusal = None;
        for key in keys {
            let mut validation = self.validation.clone();
            validation.algorithms = vec![key.algorithm];
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => return self.accept(&data.claims),
                Err(err) => refusal = Some(err),
            }
        }
        Err(refusal.map_or_else(|| AuthError::Invalid("no key".into()), invalid))
    }

    /// The fixed keys and the provider's current ones, as one set.
    fn select(&self, remote: Option<&KeySet>, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let keys = self
            .keys
            .iter()
            .chain(remote.into_iter().flat_map(KeySet::iter));
        lookup(keys, kid, alg)
    }

    /// Checks what the signature library does not: the user claim and the
    /// token's lifetime.
    fn accept(&self, claims: &Map<String, Value>) -> Result<VerifiedToken, AuthError> {
        let user_id = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AuthError::Invalid(format!("no {:?} claim naming the user", self.user_claim))
            })?;
        domain::notification::validate_user_id(user_id)
            .map_err(|why| AuthError::Invalid(format!("{} {why}", self.user_claim)))?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::Invalid("exp must be a number of seconds".into()))?;
        if let Some(max) = self.max_lifetime_secs {
            // From `iat` when the token has one, else from now: no token is
            // honoured for longer than the maximum.
            let start = claims
                .get("iat")
                .and_then(Value::as_u64)
                .unwrap_or_else(unix_now);
            if exp.saturating_sub(start) > max {
                return Err(AuthError::Invalid(format!(
                    "the token lives longer than {max} s (auth.jwt_max_lifetime_secs)"
                )));
            }
        }
        let jti = claims.get("jti").and_then(Value::as_str);
        if let (Some(jti), Some(revoked)) = (jti, &self.revoked)
            && revoked.contains(jti)
        {
            return Err(AuthError::Stale("the token was revoked".into()));
        }
        Ok(VerifiedToken {
            user_id: user_id.to_owned(),
            exp,
            jti: jti.map(str::to_owned),
        })
    }

    /// Signs an HS256 token for `user_id` valid for `ttl_secs` (needs the secret).
    pub fn issue(&self, user_id: &str, ttl_secs: u64) -> Result<String, AuthError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            exp: u64,
            iat: u64,
        }
        let signing = self
            .signing
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("no auth.jwt_secret to sign with".into()))?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id,
            exp: now + ttl_secs,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signing).map_err(invalid)
    }
}

fn invalid(err: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
            AuthError::Stale(err.to_string())
        }
        _ => AuthError::Invalid(err.to_string()),
    }
}

fn read(path: &str, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|err| anyhow::anyhow!("{key}: cannot read {path}: {err}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
