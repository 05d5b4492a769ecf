//! What travels on a user's Pub/Sub channel (stream-worker and ws-gateway
//! -> every ws-gateway): the frame's JSON exactly as clients get it,
//! optionally preceded by the W3C `traceparent` of the span that published
//! it and one space:
//!
//! ```text
//! {"type":"notification",...}
//! 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 {"type":"notification",...}
//! ```
//!
//! A frame always starts with `{`, a `traceparent` never does, so the
//! gateway splits a message without parsing it and forwards the frame bytes
//! untouched; the trace context never reaches a client.

/// A channel message carrying `frame_json`, with the trace context if any.
pub fn encode(frame_json: String, traceparent: Option<&str>) -> String {
    match traceparent {
        None => frame_json,
        Some(traceparent) => {
            let mut message = String::with_capacity(traceparent.len() + 1 + frame_json.len());
            message.push_str(traceparent);
            message.push(' ');
            message.push_str(&frame_json);
            message
        }
    }
}

/// Splits a channel message into its `traceparent` (if any) and the frame.
pub fn decode(message: &str) -> (Option<&str>, &str) {
    if message.starts_with('{') {
        return (None, message);
    }
    match message.split_once(' ') {
        Some((traceparent, frame)) => (Some(traceparent), frame),
        None => (None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_frame_without_trace_context_is_sent_as_is() {
        let frame = r#"{"type":"notification","seq":1}"#;
        assert_eq!(encode(frame.to_owned(), None), frame);
        assert_eq!(decode(frame), (None, frame));
    }

    #[test]
    fn the_trace_context_round_trips_and_the_frame_is_untouched() {
        let frame = r#"{"type":"notification","title":"a b c"}"#;
        let message = encode(frame.to_owned(), Some(TP));
        assert_eq!(message, format!("{TP} {frame}"));
        assert_eq!(decode(&message), (Some(TP), frame));
    }
}
