//! Rendering templated notifications, the one place that decides which
//! template version and which language a text comes out in: the worker's
//! storing and the gateway's `render=current` go through one [`Renderer`]
//! per process.
//!
//! Compiled templates are cached by `(key, version)`. Versions are
//! immutable, so an entry never goes stale; an edit is a new version, which
//! ingest-api finds with one indexed query per request
//! ([`Renderer::latest`]) and workers by the version pinned in each
//! notification ([`Renderer::version`]). So an edit reaches everyone at
//! once, without a restart or an invalidation message.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ::templates::{Rendered, Template};
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value};

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

/// The languages a text may be rendered in, most wanted first; the
/// renderer's default locale comes after them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// The locale the producer named in the request.
    pub request: Option<&'a str>,
    /// The user's `locale` preference.
    pub user: Option<&'a str>,
}

/// Templates compiled once per process (cheap to clone: clones share the
/// cache), and the locale used when none wanted is available.
#[derive(Clone)]
pub struct Renderer {
    compiled: Arc<RwLock<Compiled>>,
    default_locale: String,
}

impl Renderer {
    /// `default_locale`: `templates.default_locale`.
    pub fn new(default_locale: impl Into<String>) -> Self {
        Self {
            compiled: Arc::default(),
            default_locale: default_locale.into(),
        }
    }

    /// Renders `template` in the first language of `wanted` it can serve
    /// (following fallback chains: `pt-BR` falls back to `pt`), else the
    /// default locale, else the template's first one.
    pub fn render(
        &self,
        template: &Template,
        wanted: Wanted<'_>,
        params: &Map<String, Value>,
    ) -> Result<Rendered, String> {
        let locales: Vec<&str> = [wanted.request, wanted.user]
            .into_iter()
            .flatten()
            .collect();
        template.render(&locales, &self.default_locale, params)
    }

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
