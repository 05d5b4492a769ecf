//! Localised notification templates with Project Fluent.
//!
//! A template has a key, declared parameters (`string` or `number`) and,
//! per locale, one Fluent resource that defines the messages `title` and
//! `body`. Plurals, gender and other variants are Fluent select
//! expressions; plural categories follow CLDR through `intl_pluralrules`
//! (one/few/many/other for Polish, Russian, Arabic, …), and locale fallback
//! is negotiated with `fluent-langneg` (`pt-BR` -> `pt` -> default).
//!
//! This crate is pure: validation with line and column, compilation,
//! negotiation, rendering. Storage and caching live in the services.

use std::collections::BTreeMap;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use fluent_langneg::{NegotiationStrategy, negotiate_languages};
use fluent_syntax::ast;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use unic_langid::LanguageIdentifier;

/// Largest Fluent source accepted per locale.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Most parameters a template may declare.
pub const MAX_PARAMS: usize = 20;
/// The two messages every locale must define.
pub const MESSAGES: [&str; 2] = ["title", "body"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    String,
    /// Needed for plural selection (`{ $count -> [one] … *[other] … }`).
    Number,
}

/// A template as uploaded: what an admin sends and what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSource {
    /// Declared parameters and their kinds.
    #[serde(default)]
    pub params: BTreeMap<String, ParamKind>,
    /// Fluent source per BCP 47 locale, each defining `title` and `body`.
    pub locales: BTreeMap<String, String>,
}

/// One problem with an uploaded template, with its place when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TemplateIssue {
    /// The locale whose source has the problem; `null` for the template as a whole.
    pub locale: Option<String>,
    /// 1-based line and column in that locale's source.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl TemplateIssue {
    fn whole(message: impl Into<String>) -> Self {
        Self {
            locale: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(locale: &str, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, offset);
        Self {
            locale: Some(locale.to_owned()),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    fn in_locale(locale: &str, message: impl Into<String>) -> Self {
        Self {
            locale: Some(locale.to_owned()),
            line: None,
            column: None,
            message: message.into(),
        }
    }
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Template keys: 1..=64 characters of `[a-z0-9_.-]`.
pub fn validate_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err("must be 1..=64 characters of a-z 0-9 _ . -".into())
    }
}

/// Parses a BCP 47 tag (`pt-BR`, `zh-Hant-TW`), giving its canonical form.
pub fn parse_locale(tag: &str) -> Result<LanguageIdentifier, String> {
    if tag.is_empty() || tag.len() > 35 {
        return Err(format!("`{tag}` is not a BCP 47 language tag"));
    }
    tag.parse::<LanguageIdentifier>()
        .map_err(|_| format!("`{tag}` is not a BCP 47 language tag"))
}

/// A validated, compiled template version, ready to render in any of its locales.
pub struct Template {
    pub key: String,
    pub version: i32,
    pub params: BTreeMap<String, ParamKind>,
    locales: Vec<LanguageIdentifier>,
    bundles: Vec<FluentBundle<FluentResource>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("locales", &self.locales)
            .finish_non_exhaustive()
    }
}

/// The outcome of rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The locale actually used, canonical.
    pub locale: String,
    pub title: String,
    pub body: String,
}

/// Why a notification's parameters do not fit its template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter `{param}` {problem}")]
pub struct ParamError {
    pub param: String,
    pub problem: String,
}

impl Template {
    /// Validates and compiles; every problem is reported at once, with line
    /// and column where it has a place.
    pub fn compile(
        key: &str,
        version: i32,
        source: &TemplateSource,
    ) -> Result<Self, Vec<TemplateIssue>> {
        let mut issues = Vec::new();
        if let Err(why) = validate_key(key) {
            issues.push(TemplateIssue::whole(format!("key {why}")));
        }
        if source.locales.is_empty() {
            issues.push(TemplateIssue::whole("at least one locale is required"));
        }
        if source.params.len() > MAX_PARAMS {
            issues.push(TemplateIssue::whole(format!(
                "at most {MAX_PARAMS} parameters"
            )));
        }
        for name in source.params.keys() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                issues.push(TemplateIssue::whole(format!(
                    "parameter name `{name}` must be [A-Za-z0-9_-]+"
                )));
            }
        }
        let mut locales = Vec::new();
        let mut bundles = Vec::new();
        for (tag, ftl) in &source.locales {
            let locale = match parse_locale(tag) {
                Ok(locale) => locale,
                Err(why) => {
                    issues.push(TemplateIssue::in_locale(tag, why));
                    continue;
                }
            };
            if ftl.len() > MAX_SOURCE_BYTES {
                issues.push(TemplateIssue::in_locale(
                    tag,
                    format!("source is {} bytes; at most {MAX_SOURCE_BYTES}", ftl.len()),
                ));
                continue;
            }
            let before = issues.len();
            check_source(tag, ftl, &source.params, &mut issues);
            if issues.len() > before {
                continue;
            }
            let Ok(resource) = FluentResource::try_new(ftl.clone()) else {
                issues.push(TemplateIssue::in_locale(tag, "does not parse"));
                continue;
            };
            let mut bundle = FluentBundle::new_concurrent(vec![locale.clone()]);
            // Plain text, not bidi-isolated: notifications are shown as they are.
            bundle.set_use_isolating(false);
            if bundle.add_resource(resource).is_err() {
                issues.push(TemplateIssue::in_locale(tag, "defines a message twice"));
                continue;
            }
            locales.push(locale);
            bundles.push(bundle);
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            key: key.to_owned(),
            version,
            params: source.params.clone(),
            locales,
            bundles,
        })
    }

    pub fn locales(&self) -> &[LanguageIdentifier] {
        &self.locales
    }

    /// Checks a notification's parameters: every declared one present with
    /// its kind, nothing undeclared.
    pub fn check_params(&self, params: &Map<String, Value>) -> Result<(), ParamError> {
        for (name, kind) in &self.params {
            let problem = match (params.get(name), kind) {
                (None, _) => Some("is required by the template".to_owned()),
                (Some(Value::Number(_)), ParamKind::Number)
                | (Some(Value::String(_)), ParamKind::String) => None,
                (Some(_), ParamKind::Number) => {
                    Some("must be a number (it selects a plural form)".to_owned())
                }
                (Some(Value::Number(_)), ParamKind::String) => None,
                (Some(_), ParamKind::String) => Some("must be a string".to_owned()),
            };
            if let Some(problem) = problem {
                return Err(ParamError {
                    param: name.clone(),
                    problem,
                });
            }
        }
        if let Some(unknown) = params.keys().find(|k| !self.params.contains_key(*k)) {
            return Err(ParamError {
                param: unknown.clone(),
                problem: "is not declared by the template".into(),
            });
        }
        Ok(())
    }

    /// The locale to use for the first of `wanted` (most preferred first)
    /// that the template can serve, following fallback chains, else
    /// `default`, else the template's first locale.
    pub fn negotiate(&self, wanted: &[&str], default: &str) -> usize {
        let requested: Vec<LanguageIdentifier> =
            wanted.iter().filter_map(|t| parse_locale(t).ok()).collect();
        let default_id = parse_locale(default).ok();
        let chosen = negotiate_languages(
            &requested,
            &self.locales,
            default_id.as_ref(),
            NegotiationStrategy::Filtering,
        );
        chosen
            .first()
            .and_then(|id| self.locales.iter().position(|l| l == *id))
            .unwrap_or(0)
    }

    /// Renders `title` and `body` in the negotiated locale.
    pub fn render(
        &self,
        wanted: &[&str],
        default: &str,
        params: &Map<String, Value>,
    ) -> Result<Rendered, String> {
        let index = self.negotiate(wanted, default);
        let bundle = &self.bundles[index];
        let mut args = FluentArgs::new();
        for (name, value) in params {
            let value = match value {
                Value::Number(n) => FluentValue::from(n.as_f64().unwrap_or_default()),
                Value::String(s) => FluentValue::from(s.as_str()),
                other => FluentValue::from(other.to_string()),
            };
            args.set(name.as_str(), value);
        }
        let text = |message: &str| -> Result<String, String> {
            let pattern = bundle
                .get_message(message)
                .and_then(|m| m.value())
                .ok_or_else(|| format!("message `{message}` missing"))?;
            let mut errors = Vec::new();
            let out = bundle
                .format_pattern(pattern, Some(&args), &mut errors)
                .into_owned();
            match errors.first() {
                None => Ok(out),
                Some(err) => Err(format!("{message}: {err}")),
            }
        };
        Ok(Rendered {
            locale: self.locales[index].to_string(),
            title: text("title")?,
            body: text("body")?,
        })
    }
}

/// Where a `\u` (or `\U`) is followed by fewer than 4 (6) hex digits and
/// then a non-ASCII character, if anywhere.
fn short_escape_before_non_ascii(ftl: &str) -> Option<usize> {
    let bytes = ftl.as_bytes();
    bytes.windows(2).enumerate().find_map(|(at, pair)| {
        let length = match pair {
            [b'\\', b'u'] => 4,
            [b'\\', b'U'] => 6,
            _ => return None,
        };
        let digits = bytes[at + 2..]
            .iter()
            .take(length)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let next = bytes.get(at + 2 + digits);
        (digits < length && next.is_some_and(|b| !b.is_ascii())).then_some(at)
    })
}

/// Syntax, required messages and parameter references of one locale's source.
fn check_source(
    tag: &str,
    ftl: &str,
    params: &BTreeMap<String, ParamKind>,
    issues: &mut Vec<TemplateIssue>,
) {
    if let Some(offset) = short_escape_before_non_ascii(ftl) {
        // fluent-syntax 0.12 panics on these (it cuts its error message
        // inside the character); found by `make fuzz`.
        issues.push(TemplateIssue::at(
            tag,
            ftl,
            offset,
            "an incomplete \\u or \\U escape followed by a non-ASCII character: \
             write the escape in full (\\u00E9, \\U01F600) or drop the backslash",
        ));
        return;
    }
    let resource = match fluent_syntax::parser::parse(ftl) {
        Ok(resource) => resource,
        Err((_, errors)) => {
            for err in errors {
                issues.push(TemplateIssue::at(
                    tag,
                    ftl,
                    err.pos.start,
                    format!("syntax error: {}", err.kind),
                ));
            }
            return;
        }
    };
    for name in MESSAGES {
        let defined = resource.body.iter().any(|entry| {
            matches!(entry, ast::Entry::Message(m) if m.id.name == name && m.value.is_some())
        });
        if !defined {
            issues.push(TemplateIssue::in_locale(
                tag,
                format!("message `{name}` is missing"),
            ));
        }
    }
    let mut variables = Vec::new();
    for entry in &resource.body {
        if let ast::Entry::Message(message) = entry {
            if let Some(pattern) = &message.value {
                pattern_variables(pattern, &mut variables);
            }
            for attribute in &message.attributes {
                pattern_variables(&attribute.value, &mut variables);
            }
        }
    }
    for variable in variables {
        if !params.contains_key(variable) {
            let offset = find_variable(ftl, variable).unwrap_or(0);
            issues.push(TemplateIssue::at(
                tag,
                ftl,
                offset,
                format!("`${variable}` is not a declared parameter"),
            ));
        }
    }
}

/// Where `$name` first appears as a whole variable reference.
fn find_variable(ftl: &str, name: &str) -> Option<usize> {
    let needle = format!("${name}");
    ftl.match_indices(&needle)
        .find(|(at, _)| {
            ftl[at + needle.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        })
        .map(|(at, _)| at)
}

fn pattern_variables<'s>(pattern: &ast::Pattern<&'s str>, out: &mut Vec<&'s str>) {
    for element in &pattern.elements {
        if let ast::PatternElement::Placeable { expression } = element {
            expression_variables(expression, out);
        }
    }
}

fn expression_variables<'s>(expression: &ast::Expression<&'s str>, out: &mut Vec<&'s str>) {
    match expression {
        ast::Expression::Select { selector, variants } => {
            inline_variables(selector, out);
            for variant in variants {
                pattern_variables(&variant.value, out);
            }
        }
        ast::Expression::Inline(inline) => inline_variables(inline, out),
    }
}

fn inline_variables<'s>(inline: &ast::InlineExpression<&'s str>, out: &mut Vec<&'s str>) {
    match inline {
        ast::InlineExpression::VariableReference { id } => out.push(id.name),
        ast::InlineExpression::FunctionReference { arguments, .. } => {
            for arg in &arguments.positional {
                inline_variables(arg, out);
            }
            for named in &arguments.named {
                inline_variables(&named.value, out);
            }
        }
        ast::InlineExpression::Placeable { expression } => expression_variables(expression, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
