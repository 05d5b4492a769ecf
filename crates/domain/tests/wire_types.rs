//! clients/js speaks the protocol through `clients/js/src/wire.ts`, which is
//! generated from these Rust types; a change to a frame or an inbox answer
//! without regenerating it fails here.

use std::path::PathBuf;

use domain::typescript::{WIRE_TS_PATH, wire_types};

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(WIRE_TS_PATH)
}

#[test]
fn the_checked_in_typescript_wire_types_match_the_rust_types() {
    let generated = wire_types();
    let path = checked_in();
    if std::env::var_os("HERALD_WRITE_WIRE_TYPES").is_some() {
        std::fs::write(&path, &generated).expect("write wire.ts");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "{} is stale: the wire types changed; run `make wire-types` and commit the result",
        path.display()
    );
}

#[test]
fn every_frame_and_answer_is_declared() {
    let generated = wire_types();
    for name in [
        "JsonValue",
        "Priority",
        "Notification",
        "NotificationFrame",
        "ErrorCode",
        "ServerFrame",
        "ClientFrame",
        "Preferences",
        "InboxPage",
        "UnreadState",
        "ChangeResult",
    ] {
        assert!(
            generated.contains(&format!("export type {name} = ")),
            "{name} missing from the generated wire types"
        );
    }
    // Sequence numbers and counts are plain JS numbers, not bigint.
    assert!(!generated.contains("bigint"), "{generated}");
}
