//! Reading fred's untyped replies: stream ids, and the RESP2 / RESP3
//! shapes of XINFO.

use std::collections::HashMap;

use fred::types::Value;

/// Orders stream ids (`<ms>-<seq>`) numerically.
pub fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    parse_id(a).cmp(&parse_id(b))
}

fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// A RESP2 flat `[k, v, k, v]` array or a RESP3 map, as a map.
pub(super) fn value_pairs(value: Value) -> HashMap<String, Value> {
    match value {
        Value::Array(items) => {
            let mut map = HashMap::new();
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let Some(k) = k.as_string() {
                    map.insert(k, v);
                }
            }
            map
        }
        Value::Map(map) => map
            .inner()
            .into_iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// An XREADGROUP reply with each deleted entry's `nil` fields made an
/// empty list. A consumer's own pending entries come back with their id and
/// `nil` when they were deleted after it read them (an erased user's), and
/// fred's stream parsing refuses `nil` where it wants fields: the whole
/// read would fail, every time, and the consumer would never get past it.
pub(super) fn deleted_entries_emptied(reply: Value) -> Value {
    let entries = |entries: Value| match entries {
        Value::Array(entries) => Value::Array(
            entries
                .into_iter()
                .map(|entry| match entry {
                    Value::Array(mut pair) if pair.len() == 2 && pair[1].is_null() => {
                        pair[1] = Value::Array(Vec::new());
                        Value::Array(pair)
                    }
                    other => other,
                })
                .collect(),
        ),
        other => other,
    };
    match reply {
        Value::Array(streams) => Value::Array(
            streams
                .into_iter()
                .map(|stream| match stream {
                    Value::Array(mut pair) if pair.len() == 2 => {
                        let read = std::mem::replace(&mut pair[1], Value::Null);
                        pair[1] = entries(read);
                        Value::Array(pair)
                    }
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}
