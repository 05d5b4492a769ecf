//! Rates: how many units (notifications, frames, requests) per second a
//! client may spend on average, and how many at once. What enforces a rate
//! lives beside what it protects (the shared per-key limit in
//! [`crate::redis`]); this module only describes and parses one.

/// `per_sec` units on average, `burst` at once. A rate of 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate `{0}`: write e.g. 500/s, 30000/min, 100000/h, or 0 for no limit")]
pub struct InvalidRate(pub String);

impl Rate {
    pub fn unlimited(self) -> bool {
        self.per_sec <= 0.0
    }

    /// Seconds a full bucket takes to refill: the window of the
    /// `RateLimit-Policy` header (at least 1).
    pub fn window_secs(self) -> u64 {
        if self.unlimited() {
            return 1;
        }
        (f64::from(self.burst) / self.per_sec).ceil().max(1.0) as u64
    }

    /// `500/s`, `30000/min`, `100000/h` or a bare number (per second).
    pub fn parse_per_sec(text: &str) -> Result<f64, InvalidRate> {
        let invalid = || InvalidRate(text.to_owned());
        let (count, per) = text.split_once('/').unwrap_or((text, "s"));
        let count: f64 = count.trim().parse().map_err(|_| invalid())?;
        let seconds = match per.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(invalid()),
        };
        if !count.is_finite() || count < 0.0 {
            return Err(invalid());
        }
        Ok(count / seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_per_unit() {
        assert_eq!(Rate::parse_per_sec("500/s").unwrap(), 500.0);
        assert_eq!(Rate::parse_per_sec("600/min").unwrap(), 10.0);
        assert_eq!(Rate::parse_per_sec("7200/h").unwrap(), 2.0);
        assert_eq!(Rate::parse_per_sec("25").unwrap(), 25.0);
        assert_eq!(Rate::parse_per_sec("0").unwrap(), 0.0);
        for bad in ["", "-1/s", "5/day", "fast", "NaN", "inf"] {
            assert!(Rate::parse_per_sec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn window_is_the_time_to_refill() {
        let rate = Rate {
            per_sec: 500.0,
            burst: 1000,
        };
        assert_eq!(rate.window_secs(), 2);
        let slow = Rate {
            per_sec: 0.5,
            burst: 1,
        };
        assert_eq!(slow.window_secs(), 2);
    }
}
