//! A user's preferences: the language to render in, the time zone, and the
//! categories they do not want to be disturbed by.

use serde::{Deserialize, Serialize};

use crate::notification::validate_category;
use crate::validation::FieldError;

/// Most categories one user may mute.
pub const MAX_MUTED: usize = 50;

#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, ts_rs::TS,
)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// BCP 47 locale to render templates in (`pt-BR`); `null`: the default.
    pub locale: Option<String>,
    /// IANA time zone (`Europe/Warsaw`); `null`: unknown.
    pub timezone: Option<String>,
    /// Notifications in these categories are stored but neither pushed nor counted unread.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub muted_categories: Vec<String>,
}

impl Preferences {
    pub fn field_errors(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(locale) = &self.locale
            && let Err(message) = templates::parse_locale(locale)
        {
            errors.push(FieldError::new("locale", message));
        }
        if let Some(timezone) = &self.timezone
            && timezone.parse::<chrono_tz::Tz>().is_err()
        {
            errors.push(FieldError::new(
                "timezone",
                format!("`{timezone}` is not an IANA time zone"),
            ));
        }
        if self.muted_categories.len() > MAX_MUTED {
            errors.push(FieldError::new(
                "muted_categories",
                format!("at most {MAX_MUTED} categories"),
            ));
        }
        for (i, category) in self.muted_categories.iter().enumerate() {
            if let Err(message) = validate_category(category) {
                errors.push(FieldError::new(format!("muted_categories[{i}]"), message));
            }
        }
        errors
    }

    /// The locale in its canonical form (`pt-br` -> `pt-BR`).
    pub fn normalized(mut self) -> Self {
        if let Some(locale) = &self.locale
            && let Ok(id) = templates::parse_locale(locale)
        {
            self.locale = Some(id.to_string());
        }
        self.muted_categories.sort();
        self.muted_categories.dedup();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(p: &Preferences) -> Vec<String> {
        p.field_errors().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn valid_preferences() {
        let p = Preferences {
            locale: Some("pt-br".into()),
            timezone: Some("America/Sao_Paulo".into()),
            muted_categories: vec!["social".into(), "social".into()],
        };
        assert!(fields(&p).is_empty());
        let p = p.normalized();
        assert_eq!(p.locale.as_deref(), Some("pt-BR"));
        assert_eq!(p.muted_categories, ["social"]);
    }

    #[test]
    fn invalid_locale_timezone_and_categories() {
        let p = Preferences {
            locale: Some("not a locale".into()),
            timezone: Some("Mars/Olympus_Mons".into()),
            muted_categories: vec!["ok".into(), "not ok".into()],
        };
        assert_eq!(fields(&p), ["locale", "timezone", "muted_categories[1]"]);
    }
}
