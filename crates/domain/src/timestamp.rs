//! Timestamps on the wire: RFC 3339 in UTC (`2026-12-02T03:15:26.123456Z`),
//! exactly as chrono's own `Serialize` writes them, but handed to the
//! serializer as one string. chrono's impl goes through `collect_str`, which
//! serde_json feeds a character at a time through its string escaper: a
//! third of the cost of serializing a notification (`perf` of ingest-api
//! under `ingest-batch`). Use with `#[serde(serialize_with = "…")]`;
//! decoding stays chrono's.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// For a `DateTime<Utc>` field.
pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    Rfc3339(at).serialize(serializer)
}

/// For an `Option<DateTime<Utc>>` field.
pub fn serialize_option<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_some(&Rfc3339(at)),
        None => serializer.serialize_none(),
    }
}

struct Rfc3339<'a>(&'a DateTime<Utc>);

impl Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The format chrono's `Serialize` uses: as many fraction digits as
        // needed (0, 3, 6 or 9), `Z` for UTC.
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Ours {
        #[serde(serialize_with = "serialize")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "serialize_option")]
        maybe: Option<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chrono {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn written_exactly_as_chrono_writes_them() {
        let whole = Utc.with_ymd_and_hms(2026, 12, 2, 3, 15, 26).unwrap();
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        let instants = [
            whole,
            whole + chrono::Duration::milliseconds(120),
            whole + chrono::Duration::microseconds(123_456),
            whole + chrono::Duration::nanoseconds(123_456_789),
            whole + chrono::Duration::nanoseconds(1),
            leap,
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            Utc::now(),
        ];
        for at in instants {
            for maybe in [None, Some(at)] {
                let ours = serde_json::to_string(&Ours { at, maybe }).unwrap();
                let chrono = serde_json::to_string(&Chrono { at, maybe }).unwrap();
                assert_eq!(ours, chrono, "{at:?}");
            }
        }
    }
}
