//! Templates kept in git: a folder read at start, one subfolder per key,
//! `<locale>.ftl` per locale and an optional `params.json`
//! (`{"count": "number", "name": "string"}`):
//!
//! ```text
//! templates/
//!   order_shipped/params.json
//!   order_shipped/en.ftl
//!   order_shipped/pl.ftl
//! ```
//!
//! Each template is validated like an upload and stored as a new version
//! when it differs from the current one. An invalid file stops the start
//! with its path, line and column: a broken template in git should fail a
//! deploy, not be skipped silently.

use std::collections::BTreeMap;
use std::path::Path;

use diesel_async::AsyncPgConnection;
use templates::{Template, TemplateSource};

use crate::storage::templates as stored;

#[derive(Debug, thiserror::Error)]
pub enum TemplateDirError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Reads every template under `dir`; returns `(key, version)` of each.
pub async fn load(
    conn: &mut AsyncPgConnection,
    dir: &Path,
) -> Result<Vec<(String, i32)>, TemplateDirError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| TemplateDirError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| TemplateDirError::Read {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut loaded = Vec::new();
    for entry in entries {
        let key = entry.file_name().to_string_lossy().into_owned();
        let folder = entry.path();
        let params_path = folder.join("params.json");
        let params = if params_path.exists() {
            serde_json::from_str(&read(&params_path)?)
                .map_err(|e| TemplateDirError::Invalid(format!("{}: {e}", params_path.display())))?
        } else {
            BTreeMap::new()
        };
        let mut locales = BTreeMap::new();
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .map_err(|source| TemplateDirError::Read {
                path: folder.display().to_string(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ftl"))
            .collect();
        files.sort();
        for file in files {
            let locale = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            locales.insert(locale, read(&file)?);
        }
        let source = TemplateSource { params, locales };
        if let Err(issues) = Template::compile(&key, 0, &source) {
            let described: Vec<String> = issues
                .iter()
                .map(|i| {
                    let file = i.locale.as_ref().map_or_else(
                        || folder.display().to_string(),
                        |l| folder.join(format!("{l}.ftl")).display().to_string(),
                    );
                    match (i.line, i.column) {
                        (Some(line), Some(column)) => {
                            format!("{file}:{line}:{column}: {}", i.message)
                        }
                        _ => format!("{file}: {}", i.message),
                    }
                })
                .collect();
            return Err(TemplateDirError::Invalid(described.join("; ")));
        }
        let version = stored::create_version(conn, &key, &source).await?;
        loaded.push((key, version));
    }
    Ok(loaded)
}
