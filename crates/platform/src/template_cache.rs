//! Compiled templates, cached by `(key, version)`. Versions are immutable,
//! so an entry never goes stale; an edit is a new version, which ingest-api
//! finds with one indexed query per request ([`TemplateCache::latest`]) and
//! workers by the version pinned in each notification
//! ([`TemplateCache::version`]). So an edit reaches everyone at once, without
//! a restart or an invalidation message.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ::templates::Template;
use diesel_async::AsyncPgConnection;

use crate::db::DbError;
use crate::storage::templates::{self as stored, StoredTemplate};

#[derive(Debug, thiserror::Error)]
pub enum TemplateLookupError {
    #[error("template `{0}` does not exist")]
    Unknown(String),
    #[error("template `{0}` version {1} does not compile: {2}")]
    Invalid(String, i32, String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Compiled templates by `(key, version)`.
type Compiled = HashMap<(String, i32), Arc<Template>>;

#[derive(Clone, Default)]
pub struct TemplateCache {
    compiled: Arc<RwLock<Compiled>>,
}

impl TemplateCache {
    /// The current version of `key`, compiled.
    pub async fn latest(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
    ) -> Result<Arc<Template>, TemplateLookupError> {
        let Some(found) = stored::latest(conn, key).await? else {
            return Err(TemplateLookupError::Unknown(key.to_owned()));
        };
        self.compile(found)
    }

    /// One exact version, compiled.
    pub async fn version(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
        version: i32,
    ) -> Result<Arc<Template>, TemplateLookupError> {
        if let Some(hit) = self.get(key, version) {
            return Ok(hit);
        }
        let Some(found) = stored::version(conn, key, version).await? else {
            return Err(TemplateLookupError::Unknown(format!("{key} v{version}")));
        };
        self.compile(found)
    }

    fn get(&self, key: &str, version: i32) -> Option<Arc<Template>> {
        self.compiled
            .read()
            .ok()?
            .get(&(key.to_owned(), version))
            .cloned()
    }

    fn compile(&self, found: StoredTemplate) -> Result<Arc<Template>, TemplateLookupError> {
        if let Some(hit) = self.get(&found.key, found.version) {
            return Ok(hit);
        }
        let template =
            Template::compile(&found.key, found.version, &found.source).map_err(|issues| {
                let first = issues
                    .first()
                    .map(|i| i.message.clone())
                    .unwrap_or_default();
                TemplateLookupError::Invalid(found.key.clone(), found.version, first)
            })?;
        let template = Arc::new(template);
        if let Ok(mut compiled) = self.compiled.write() {
            compiled.insert((found.key, found.version), template.clone());
        }
        Ok(template)
    }
}
