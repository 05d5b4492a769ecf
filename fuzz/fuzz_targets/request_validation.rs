//! Producers' bodies (`POST /v1/notifications`, a batch item, the
//! preferences of a user): whatever the bytes, decoding answers Ok or a
//! field error, never a panic; what is accepted is valid.
#![no_main]

use domain::{NotificationRequest, Preferences};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = NotificationRequest::parse(data) {
        assert!(domain::notification::validate_user_id(&request.user_id).is_ok());
        assert!(request.field_errors().is_empty());
    }
    if let Ok(preferences) = domain::validation::decode_json::<Preferences>(data)
        && preferences.field_errors().is_empty()
    {
        // Normalising what was accepted keeps it acceptable.
        assert!(preferences.normalized().field_errors().is_empty());
    }
});
