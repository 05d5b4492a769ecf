//! Which entries a round reads: `high` first, yet `normal` and `low` are
//! never starved.
//!
//! A round reads `high` up to the batch size, then `normal` up to what is
//! left but at least its reserved share, then `low` likewise. Under a
//! backlog in every lane a round therefore holds at most
//! `batch * (1 + normal_share + low_share)` entries, and `low` gets at least
//! `low_share` of every round. When every lane is empty, one blocking read
//! over all lanes waits for whichever gets an entry first, so a lone
//! notification is processed at once.

use domain::Priority;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LanePolicy {
    pub batch_size: usize,
    pub normal_min: usize,
    pub low_min: usize,
}

impl LanePolicy {
    /// How many entries to ask of `lane`, given how many this round already holds.
    pub fn want(&self, lane: Priority, already: usize) -> usize {
        let left = self.batch_size.saturating_sub(already);
        match lane {
            Priority::High => self.batch_size,
            Priority::Normal => left.max(self.normal_min),
            Priority::Low => left.max(self.low_min),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LanePolicy = LanePolicy {
        batch_size: 100,
        normal_min: 20,
        low_min: 10,
    };

    #[test]
    fn high_first_with_reserved_shares() {
        assert_eq!(POLICY.want(Priority::High, 0), 100);
        // A full round of high still leaves room for the reserved shares.
        assert_eq!(POLICY.want(Priority::Normal, 100), 20);
        assert_eq!(POLICY.want(Priority::Low, 120), 10);
    }

    #[test]
    fn idle_high_lane_gives_the_whole_batch_to_the_others() {
        assert_eq!(POLICY.want(Priority::Normal, 0), 100);
        assert_eq!(POLICY.want(Priority::Low, 0), 100);
        assert_eq!(POLICY.want(Priority::Low, 30), 70);
    }
}
