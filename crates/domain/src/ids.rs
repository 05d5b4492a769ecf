//! Notification ids are UUIDv7, made by ingest-api when it accepts one: they
//! start with the Unix time in milliseconds (big-endian), so they sort by
//! creation time, as bytes in PostgreSQL as in Rust. These read and make
//! that time.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// When the id was made (`None` for ids that are not UUIDv7, which
/// ingest-api never answers).
pub fn made_at(id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// The lowest UUIDv7 of `at`'s millisecond: every id made before it sorts
/// below, every one made at or after it above.
pub fn first_id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 9562 variant
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made_in(ms: i64) -> Uuid {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            ((ms % 1000) * 1_000_000) as u32,
        );
        Uuid::new_v7(ts)
    }

    #[test]
    fn the_first_id_of_a_millisecond_sorts_between_that_millisecond_and_the_one_before() {
        let at = Utc::now();
        let floor = first_id_at(at);
        assert_eq!(floor.get_version_num(), 7);
        let ms = at.timestamp_millis();
        assert!(made_in(ms - 1) < floor);
        assert!(made_in(ms) >= floor);
        assert!(made_in(ms + 1) > floor);
        assert_eq!(
            floor.as_bytes()[..6],
            u64::try_from(ms).unwrap().to_be_bytes()[2..]
        );
    }

    #[test]
    fn made_at_reads_the_millisecond_back() {
        let at = Utc::now();
        let id = made_in(at.timestamp_millis());
        assert_eq!(
            made_at(id).unwrap().timestamp_millis(),
            at.timestamp_millis()
        );
        assert_eq!(made_at(Uuid::nil()), None);
        assert_eq!(
            made_at(first_id_at(at)).unwrap().timestamp_millis(),
            at.timestamp_millis()
        );
    }
}
