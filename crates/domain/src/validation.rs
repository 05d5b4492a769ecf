//! Input validation shared by every entry point: field-level errors that the
//! HTTP layer turns into an RFC 9457 `errors` list, and JSON decoding that
//! names the offending field instead of reporting a byte offset.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `user_id` or `data.items[2]`.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON at all (syntax error, truncated document).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// JSON, but fields are missing, of the wrong type, or fail validation.
    #[error("{} invalid field(s)", .0.len())]
    InvalidFields(Vec<FieldError>),
}

/// Decodes a JSON document, naming the field at fault when the shape is wrong.
///
/// A valid document is decoded once, without tracking where the decoder is:
/// `serde_path_to_error` keeps a path segment for every key it passes, about
/// a third of the cost of decoding a notification. Only a document that
/// fails is decoded again with the path tracked, to name the field; both
/// decoders fail on the same input, so a refused document gets the same
/// error either way.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    // Every body Herald takes is an object; serde would also fill a struct
    // from an array (`[null, null]`), by position. Refuse that here.
    if let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace())
        && *first == b'['
    {
        return Err(RequestError::InvalidFields(vec![FieldError::new(
            "$",
            "invalid type: array, expected a JSON object",
        )]));
    }
    serde_json::from_slice(body).map_err(|err| match decode_json_tracked::<T>(body) {
        Err(tracked) => tracked,
        // Not expected (both decoders fail on the same input): the error without its path.
        Ok(_) => request_error("", &err),
    })
}

/// [`decode_json`] with the path of the field at fault tracked.
fn decode_json_tracked<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|err| request_error(&err.path().to_string(), err.inner()))?;
    // Trailing garbage after the document is malformed input, not ignorable.
    de.end()
        .map_err(|err| RequestError::MalformedJson(err.to_string()))?;
    Ok(value)
}

/// A decoding error as the client sees it: malformed JSON, or the field at
/// `path` at fault.
fn request_error(path: &str, err: &serde_json::Error) -> RequestError {
    match err.classify() {
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => RequestError::MalformedJson(err.to_string()),
        serde_json::error::Category::Data => {
            RequestError::InvalidFields(vec![field_error_from_serde(path, err)])
        }
    }
}

/// serde reports a missing field at its parent's path; pull the field's own
/// name out of the message so the client sees which one. (An unknown field
/// is already in the path.)
fn field_error_from_serde(path: &str, err: &serde_json::Error) -> FieldError {
    let message = strip_position(&err.to_string());
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (missing, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "$".to_owned(),
        (None, path) => path.to_owned(),
    };
    FieldError::new(field, message)
}

/// serde_json appends " at line L column C"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(idx) => message[..idx].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn an_array_never_stands_for_an_object() {
        // serde alone would fill `Sample` by position from `["a", 1]`.
        let err = decode_json::<Sample>(br#" ["a", 1]"#).unwrap_err();
        let RequestError::InvalidFields(errors) = err else {
            panic!("expected field errors, got {err:?}");
        };
        assert_eq!(errors[0].field, "$");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = decode_json::<Sample>(br#"{"name": 5, "count": 1}"#).unwrap_err();
        let RequestError::InvalidFields(errors) = err else {
            panic!("expected field errors, got {err:?}");
        };
        assert_eq!(errors[0].field, "name");
        assert!(errors[0].message.contains("invalid type"));
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let missing = decode_json::<Sample>(br#"{"name": "a"}"#).unwrap_err();
        assert_eq!(
            missing,
            RequestError::InvalidFields(vec![FieldError::new("count", "missing field `count`")])
        );
        let unknown =
            decode_json::<Sample>(br#"{"name": "a", "count": 1, "extra": 2}"#).unwrap_err();
        let RequestError::InvalidFields(errors) = unknown else {
            panic!("expected field errors");
        };
        assert_eq!(errors[0].field, "extra");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Sample>,
    }

    #[test]
    fn valid_documents_decode_and_nested_errors_keep_their_path() {
        let outer =
            decode_json::<Outer>(b"{\"items\": [{\"name\": \"a\", \"count\": 1}]} \n").unwrap();
        assert_eq!(outer.items[0].name, "a");
        let err = decode_json::<Outer>(
            br#"{"items": [{"name": "a", "count": 1}, {"name": "b", "count": -1}]}"#,
        )
        .unwrap_err();
        let RequestError::InvalidFields(errors) = err else {
            panic!("expected field errors, got {err:?}");
        };
        assert_eq!(errors[0].field, "items[1].count");
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_malformed() {
        assert!(matches!(
            decode_json::<Sample>(br#"{"name": "#),
            Err(RequestError::MalformedJson(_))
        ));
        assert!(matches!(
            decode_json::<Sample>(br#"{"name": "a", "count": 1} x"#),
            Err(RequestError::MalformedJson(_))
        ));
    }
}
