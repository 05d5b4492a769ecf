//! A token bucket per connection for the frames that cost the database
//! (`resume`, `read`, `read_all`): a burst, then a steady rate. One socket
//! repeating `resume` must not make the gateway replay its history from
//! PostgreSQL as fast as it can send the frame.

use std::time::Duration;

use std::time::Instant;

/// `gateway.client_requests_burst` and `gateway.client_requests_per_sec`.
#[derive(Debug, Clone, Copy)]
pub struct RequestBudget {
    pub burst: u32,
    pub per_sec: f64,
}

#[derive(Debug)]
pub struct TokenBucket {
    budget: RequestBudget,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(budget: RequestBudget) -> Self {
        Self {
            budget,
            tokens: f64::from(budget.burst),
            updated: Instant::now(),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.duration_since(self.updated).as_secs_f64() * self.budget.per_sec;
        self.tokens = (self.tokens + refill).min(f64::from(self.budget.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.budget.per_sec,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(RequestBudget {
            burst: 3,
            per_sec: 2.0,
        });
        let start = bucket.updated;
        for _ in 0..3 {
            assert!(bucket.take_at(start).is_ok());
        }
        let wait = bucket.take_at(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        let later = start + Duration::from_millis(500);
        assert!(bucket.take_at(later).is_ok());
        assert!(bucket.take_at(later).is_err());
        // Idle for long: back to the burst, no more.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take_at(much_later).is_ok());
        }
        assert!(bucket.take_at(much_later).is_err());
    }
}
