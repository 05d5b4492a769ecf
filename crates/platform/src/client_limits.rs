//! Limits per client, kept in each process's memory: rates per client
//! address or per user ([`KeyedRate`]), and a gate that stops an address
//! after too many failed authentications ([`FailureGate`]). What they
//! protect is the process itself (its handshakes, its queries), so the
//! state is per process; behind N replicas a client gets N times the rate,
//! which the docs say. The per-key producer rate, which must hold across
//! replicas, is in Redis ([`crate::redis`]).
//!
//! The client's address is the TCP peer, or with `http.trusted_proxy_hops`
//! = N the address N hops from the right of `X-Forwarded-For`, as written
//! by the N proxies in front (an Ingress is 1): entries further left are
//! the client's to forge.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::problem::Problem;
use crate::rate::Rate;

/// Keys remembered before idle ones are dropped.
const RETAIN_ABOVE: usize = 100_000;

/// The address a request comes from (see the module's doc).
pub fn client_address(req: &HttpRequest, trusted_proxy_hops: usize) -> Option<IpAddr> {
    if trusted_proxy_hops == 0 {
        return req.peer_addr().map(|addr| addr.ip());
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(trusted_proxy_hops)
        .and_then(|index| forwarded[index].parse().ok())
        // Fewer entries than proxies: the request did not come through
        // them all; the peer is the best known.
        .or_else(|| req.peer_addr().map(|addr| addr.ip()))
}

/// A rate per key (address, user), or none (`Rate` of 0).
pub struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: Option<RateLimiter<K, HashMapStateStore<K>, DefaultClock>>,
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            limiter: quota(rate).map(RateLimiter::hashmap),
        }
    }

    /// Takes one for `key`, or says how long until one is there.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > RETAIN_ABOVE {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Closes the door to an address after too many failed authentications:
/// each failure takes one from the address's rate; once it is spent, the
/// address is refused (without checking its credentials) until it refills.
pub struct FailureGate<K: Hash + Eq + Clone> {
    failures: KeyedRate<K>,
    closed: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> FailureGate<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            failures: KeyedRate::new(rate),
            closed: Mutex::default(),
        }
    }

    /// `Err(wait)` while the address is shut out.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        match closed.get(key) {
            Some(until) => until
                .checked_duration_since(Instant::now())
                .map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Counts a failure; the one that spends the rate closes the gate.
    pub fn failed(&self, key: &K) {
        if let Err(wait) = self.failures.check(key) {
            let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if closed.len() > RETAIN_ABOVE {
                closed.retain(|_, until| *until > now);
            }
            closed.insert(key.clone(), now + wait);
        }
    }
}

/// Connections held per client address, each released when its
/// [`AddressSlot`] drops.
pub struct AddressConnections {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its address.
pub struct AddressSlot {
    owner: Arc<AddressConnections>,
    address: IpAddr,
}

impl AddressConnections {
    /// At most `max` per address; 0: no limit.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::default(),
        })
    }

    /// A slot for one more connection from `address`, or how many it holds.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<AddressSlot, Limited> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(address).or_default();
        if self.max > 0 && *count >= self.max {
            return Err(Limited::AddressFull(*count));
        }
        *count += 1;
        Ok(AddressSlot {
            owner: self.clone(),
            address,
        })
    }

    pub fn held(&self, address: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&address).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.address);
            }
        }
    }
}

/// A request refused by a limit per client: 429 problem+json, with
/// `Retry-After` when waiting helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("too many failed authentications from this address")]
    Failures(Duration),
    #[error("too many WebSocket handshakes from this address")]
    Handshakes(Duration),
    #[error("too many writes by this user")]
    Writes(Duration),
    #[error("this address holds {0} connections, its maximum")]
    AddressFull(usize),
}

impl Limited {
    pub fn problem(&self) -> Problem {
        let problem = |slug, title| Problem::new(StatusCode::TOO_MANY_REQUESTS, slug, title);
        match self {
            Limited::Failures(_) => problem("too-many-failures", "Too many failed attempts")
                .detail("this address failed to authenticate too often; retry after Retry-After seconds with valid credentials"),
            Limited::Handshakes(_) => problem("too-many-requests", "Too many requests")
                .detail("this address opens WebSockets too fast (gateway.handshakes_per_address_per_sec); retry after Retry-After seconds"),
            Limited::Writes(_) => problem("too-many-requests", "Too many requests")
                .detail("this user changes the inbox too fast (gateway.rest_writes_per_user_per_sec); nothing was changed, retry after Retry-After seconds"),
            Limited::AddressFull(held) => problem("too-many-connections", "Too many connections")
                .detail(format!("this address already holds {held} connections on this gateway (gateway.max_connections_per_address)")),
        }
    }

    /// The problem, with `Retry-After` in whole seconds (at least 1).
    pub fn respond(&self) -> HttpResponse {
        let mut response = self.problem().respond(self);
        let wait = match self {
            Limited::Failures(wait) | Limited::Handshakes(wait) | Limited::Writes(wait) => *wait,
            Limited::AddressFull(_) => return response,
        };
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        response
    }
}

fn quota(rate: Rate) -> Option<Quota> {
    if rate.unlimited() {
        return None;
    }
    let burst = NonZeroU32::new(rate.burst.max(1))?;
    let period = Duration::from_secs_f64(1.0 / rate.per_sec).max(Duration::from_nanos(1));
    Quota::with_period(period).map(|quota| quota.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_burst_then_refused_per_key() {
        let rate = KeyedRate::new(Rate {
            per_sec: 0.01,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(rate.check(&"a").is_ok());
        }
        let wait = rate.check(&"a").unwrap_err();
        assert!(wait > Duration::from_secs(90), "{wait:?}");
        assert!(rate.check(&"b").is_ok(), "another key has its own");
        let unlimited = KeyedRate::new(Rate {
            per_sec: 0.0,
            burst: 1,
        });
        for _ in 0..1000 {
            assert!(unlimited.check(&"a").is_ok());
        }
    }

    #[test]
    fn the_gate_closes_after_the_failures_are_spent() {
        let gate = FailureGate::new(Rate {
            per_sec: 0.01,
            burst: 2,
        });
        for _ in 0..2 {
            assert!(gate.check(&1).is_ok());
            gate.failed(&1);
        }
        assert!(gate.check(&1).is_ok(), "two failures are allowed");
        gate.failed(&1);
        assert!(gate.check(&1).is_err(), "the third closes it");
        assert!(gate.check(&2).is_ok());
    }

    #[test]
    fn address_slots_are_released_when_dropped() {
        let connections = AddressConnections::new(2);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let first = connections.admit(address).unwrap();
        let _second = connections.admit(address).unwrap();
        assert_eq!(
            connections.admit(address).err(),
            Some(Limited::AddressFull(2))
        );
        assert!(connections.admit("192.0.2.2".parse().unwrap()).is_ok());
        drop(first);
        assert_eq!(connections.held(address), 1);
        assert!(connections.admit(address).is_ok());
    }

    #[test]
    fn forwarded_addresses_trust_only_the_proxies_hops() {
        let peer: std::net::SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let req = TestRequest::default()
            .peer_addr(peer)
            .insert_header(("x-forwarded-for", "6.6.6.6, 203.0.113.7"))
            .to_http_request();
        assert_eq!(client_address(&req, 0), Some(peer.ip()));
        assert_eq!(client_address(&req, 1), "203.0.113.7".parse().ok());
        assert_eq!(client_address(&req, 2), "6.6.6.6".parse().ok());
        assert_eq!(client_address(&req, 3), Some(peer.ip()));
    }
}
