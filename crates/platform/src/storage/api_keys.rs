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
use crate::rate::Rate;

/// Prefix that makes Herald keys recognisable to secret scanners.
const KEY_PREFIX: &str = "hrld_";

/// One thing a key may do; a key holds a set of them ([`Scopes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /v1/notifications` and `/batch`.
    Notify,
    /// `PUT /v1/users/{user_id}/preferences`.
    Preferences,
    /// `/v1/admin/templates`.
    Templates,
    /// `/v1/admin/dead-letters`.
    Dlq,
    /// The other operators' endpoints (the token deny-list).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Notify,
        Scope::Preferences,
        Scope::Templates,
        Scope::Dlq,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Notify => "notify",
            Scope::Preferences => "preferences",
            Scope::Templates => "templates",
            Scope::Dlq => "dlq",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The scopes of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// What keys created without `--scope` may do: notify and set preferences.
    pub const PRODUCER: Scopes = Scopes(1 << Scope::Notify as u8 | 1 << Scope::Preferences as u8);
    /// Every scope (`keys create --admin`).
    pub const ALL: Scopes = Scopes((1 << Scope::ALL.len()) - 1);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// A comma-separated list (`notify,preferences`); an unknown name is an error.
    pub fn parse_list(list: &str) -> Result<Scopes, ApiKeyError> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .try_fold(Scopes::default(), |scopes, name| {
                Scope::parse(name)
                    .map(|scope| scopes.with(scope))
                    .ok_or_else(|| ApiKeyError::UnknownScope(name.to_owned()))
            })
    }

    fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }

    fn from_names(names: &[String]) -> Scopes {
        // Names a later release may add are ignored, never widened.
        names
            .iter()
            .filter_map(|name| Scope::parse(name))
            .fold(Scopes::default(), Scopes::with)
    }
}

/// What a new key may do, whom it addresses, how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    pub scopes: Scopes,
    /// When set, the key addresses only user ids `<tenant>:...`.
    pub tenant: Option<String>,
    /// `None`: the configured default (`ingest.key_rate_per_sec`, `ingest.key_burst`).
    pub rate_per_sec: Option<f64>,
    pub burst: Option<u32>,
}

impl KeyPolicy {
    /// Notify and set preferences, any user, the default rate.
    pub fn producer() -> Self {
        Self::with_scopes(Scopes::PRODUCER)
    }

    /// Every scope.
    pub fn admin() -> Self {
        Self::with_scopes(Scopes::ALL)
    }

    pub fn with_scopes(scopes: Scopes) -> Self {
        Self {
            scopes,
            tenant: None,
            rate_per_sec: None,
            burst: None,
        }
    }

    fn check(&self) -> Result<(), ApiKeyError> {
        if self.scopes == Scopes::default() {
            return Err(ApiKeyError::NoScope);
        }
        if let Some(tenant) = &self.tenant {
            if !valid_name(tenant) || tenant.contains(':') {
                return Err(ApiKeyError::InvalidTenant);
            }
            // Templates, dead letters and the admin endpoints are shared by
            // every tenant: a tenant's key must not see or change them.
            if let Some(shared) = self
                .scopes
                .iter()
                .find(|s| matches!(s, Scope::Templates | Scope::Dlq | Scope::Admin))
            {
                return Err(ApiKeyError::TenantWithSharedScope(shared.as_str()));
            }
        }
        if self.burst == Some(0) {
            return Err(ApiKeyError::ZeroBurst);
        }
        Ok(())
    }
}

/// An authenticated key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyIdentity {
    pub id: Uuid,
    pub scopes: Scopes,
    pub tenant: Option<std::sync::Arc<str>>,
    pub rate_per_sec: Option<f64>,
    pub burst: Option<u32>,
}

impl KeyIdentity {
    /// May this key address `user_id`? Always, without a tenant; otherwise
    /// only ids `<tenant>:...`.
    pub fn may_address(&self, user_id: &str) -> bool {
        self.tenant.as_deref().is_none_or(|tenant| {
            user_id
                .strip_prefix(tenant)
                .is_some_and(|rest| rest.starts_with(':'))
        })
    }

    /// The key's rate, or `default` where it has none of its own.
    pub fn rate(&self, default: Rate) -> Rate {
        Rate {
            per_sec: self.rate_per_sec.unwrap_or(default.per_sec),
            burst: self.burst.unwrap_or(default.burst),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("an active API key named `{0}` already exists")]
    NameTaken(String),
    #[error("no active API key named `{0}`")]
    NotFound(String),
    #[error("API key names are 1..=64 characters of A-Z a-z 0-9 . _ -")]
    InvalidName,
    #[error("unknown scope `{0}`; scopes are notify, preferences, templates, dlq, admin")]
    UnknownScope(String),
    #[error("a key needs at least one scope")]
    NoScope,
    #[error("tenants are 1..=64 characters of A-Z a-z 0-9 . _ -")]
    InvalidTenant,
    #[error("a tenant's key may not have the `{0}` scope: it is shared by every tenant")]
    TenantWithSharedScope(&'static str),
    #[error("a key's burst is at least 1")]
    ZeroBurst,
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
    policy: &KeyPolicy,
) -> Result<String, ApiKeyError> {
    if !valid_name(name) {
        return Err(ApiKeyError::InvalidName);
    }
    policy.check()?;
    let key = generate_key();
    let hash = hash_key(&key);
    let inserted = diesel::insert_into(api_keys::table)
        .values(ApiKeyInsert {
            id: Uuid::now_v7(),
            name,
            key_hash: &hash,
            // What the previous release reads (see the migration).
            scope: if policy.scopes == Scopes::ALL {
                "admin"
            } else {
                "producer"
            },
            scopes: policy.scopes.names(),
            tenant: policy.tenant.as_deref(),
            rate_per_sec: policy.rate_per_sec,
            burst: policy.burst.map(|b| i32::try_from(b).unwrap_or(i32::MAX)),
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
        .select((
            api_keys::id,
            api_keys::scopes,
            api_keys::tenant,
            api_keys::rate_per_sec,
            api_keys::burst,
        ))
        .first::<(Uuid, Vec<String>, Option<String>, Option<f64>, Option<i32>)>(conn)
        .await
        .optional()?;
    Ok(
        found.map(|(id, scopes, tenant, rate_per_sec, burst)| KeyIdentity {
            id,
            scopes: Scopes::from_names(&scopes),
            tenant: tenant.map(Into::into),
            rate_per_sec,
            burst: burst.map(|b| u32::try_from(b.max(1)).unwrap_or(1)),
        }),
    )
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

    #[test]
    fn scopes_parse_and_admin_is_all() {
        let scopes = Scopes::parse_list("notify, dlq").unwrap();
        assert!(scopes.contains(Scope::Notify) && scopes.contains(Scope::Dlq));
        assert!(!scopes.contains(Scope::Preferences));
        assert_eq!(Scopes::from_names(&scopes.names()), scopes);
        assert_eq!(
            Scopes::parse_list("notify,preferences,templates,dlq,admin").unwrap(),
            Scopes::ALL
        );
        assert!(matches!(
            Scopes::parse_list("notify,root"),
            Err(ApiKeyError::UnknownScope(name)) if name == "root"
        ));
        // A name from a later release grants nothing here.
        assert_eq!(
            Scopes::from_names(&["notify".into(), "everything".into()]),
            Scopes::default().with(Scope::Notify)
        );
    }

    #[test]
    fn a_tenant_key_addresses_only_its_users_and_no_shared_scope() {
        let identity = KeyIdentity {
            id: Uuid::now_v7(),
            scopes: Scopes::PRODUCER,
            tenant: Some("tenant-a".into()),
            rate_per_sec: None,
            burst: None,
        };
        assert!(identity.may_address("tenant-a:alice"));
        assert!(!identity.may_address("tenant-b:alice"));
        assert!(!identity.may_address("tenant-ab:alice"));
        assert!(!identity.may_address("tenant-a"));
        let mut policy = KeyPolicy::producer();
        policy.tenant = Some("tenant-a".into());
        assert!(policy.check().is_ok());
        policy.scopes = policy.scopes.with(Scope::Dlq);
        assert!(matches!(
            policy.check(),
            Err(ApiKeyError::TenantWithSharedScope("dlq"))
        ));
        policy.scopes = Scopes::PRODUCER;
        policy.tenant = Some("a:b".into());
        assert!(matches!(policy.check(), Err(ApiKeyError::InvalidTenant)));
    }
}
