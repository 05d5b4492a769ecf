//! What reaches the gateway from outside: a client's text frame, and a
//! message on a user's Pub/Sub channel. Decoding never panics; a frame
//! that decodes encodes back to itself.
#![no_main]

use domain::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = serde_json::from_slice::<ClientFrame>(data) {
        let again = serde_json::to_vec(&frame).expect("a decoded frame encodes");
        let decoded: ClientFrame = serde_json::from_slice(&again).expect("and decodes again");
        assert_eq!(decoded, frame);
    }
    if let Ok(message) = std::str::from_utf8(data) {
        let (traceparent, frame) = domain::published::decode(message);
        if let Some(traceparent) = traceparent {
            assert_eq!(
                domain::published::encode(frame.to_owned(), Some(traceparent)),
                message
            );
        }
    }
});
