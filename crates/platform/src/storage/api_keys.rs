//! Producer API keys. A key is shown once at creation; only its SHA-256 is
//! stored (keys are 256 random bits, so a fast hash is enough: there is
//! nothing to brute-force).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::models::ApiKeyInsert;
use super::schema::api_keys;
use crate::db::DbError;

/// Prefix that makes Herald keys recognisable to secret scanners.
const KEY_PREFIX: &str = "hrld_";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Send notifications and set user preferences.
    Producer,
    /// Everything a producer may, plus the admin endpoints (dead letters, templates).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Producer => "producer",
            Scope::Admin => "admin",
        }
    }
}

/// An authenticated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIdentity {
    pub id: Uuid,
    pub scope: Scope,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("an active API key named `{0}` already exists")]
    NameTaken(String),
    #[error("no active API key named `{0}`")]
    NotFound(String),
    #[error("API key names are 1..=64 characters of A-Z a-z 0-9 . _ -")]
    InvalidName,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ApiKeyError {
    fn from(err: diesel::result::Error) -> Self {
        ApiKeyError::Db(DbError::Query(err))
    }
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

/// Could `key` be one Herald issued (`hrld_` and 64 lowercase hex digits)?
/// Anything else is refused without asking PostgreSQL.
pub fn well_formed(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Creates a key and returns it in clear: the only time it exists in clear.
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    scope: Scope,
) -> Result<String, ApiKeyError> {
    if !valid_name(name) {
        return Err(ApiKeyError::InvalidName);
    }
    let key = generate_key();
    let hash = hash_key(&key);
    let inserted = diesel::insert_into(api_keys::table)
        .values(ApiKeyInsert {
            id: Uuid::now_v7(),
            name,
            key_hash: &hash,
            scope: scope.as_str(),
        })
        .execute(conn)
        .await;
    match inserted {
        Ok(_) => Ok(key),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(ApiKeyError::NameTaken(name.to_owned())),
        Err(err) => Err(err.into()),
    }
}

/// Revokes the active key with this name and answers its id. Processes that
/// cache keys must be told (`RedisStore::announce_key_revoked`).
pub async fn revoke(conn: &mut AsyncPgConnection, name: &str) -> Result<Uuid, ApiKeyError> {
    diesel::update(
        api_keys::table
            .filter(api_keys::name.eq(name))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(diesel::dsl::now))
    .returning(api_keys::id)
    .get_result(conn)
    .await
    .optional()?
    .ok_or_else(|| ApiKeyError::NotFound(name.to_owned()))
}

/// The active key whose SHA-256 ([`hash_key`]) is `key_hash`, if any.
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> Result<Option<KeyIdentity>, DbError> {
    let found = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select((api_keys::id, api_keys::scope))
        .first::<(Uuid, String)>(conn)
        .await
        .optional()?;
    Ok(found.map(|(id, scope)| KeyIdentity {
        id,
        scope: if scope == "admin" {
            Scope::Admin
        } else {
            Scope::Producer
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert!(well_formed(&a));
        assert!(!well_formed(&a.to_uppercase()));
        assert!(!well_formed(&a[..a.len() - 1]));
        assert!(!well_formed("hrld_nope"));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn names() {
        assert!(valid_name("dev"));
        assert!(valid_name("billing-service_v2.1"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
