//! The gateway's limits per client ([`platform::client_limits`], per
//! process): failed authentications and handshakes per address,
//! connections per address, REST writes per user. The limits per user
//! socket count are the hub's; the per-connection frame budget is
//! [`crate::budget`].

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use platform::client_limits::{
    AddressConnections, AddressSlot, FailureGate, KeyedRate, Limited, client_address,
};
use platform::rate::Rate;
use platform::settings::Settings;

use crate::auth::{AuthError, TokenVerifier, VerifiedToken};
use crate::error::GatewayError;

pub struct ClientLimits {
    trusted_proxy_hops: usize,
    failures: FailureGate<IpAddr>,
    handshakes: KeyedRate<IpAddr>,
    connections: Arc<AddressConnections>,
    writes: KeyedRate<String>,
}

impl ClientLimits {
    pub fn from_settings(settings: &Settings) -> Self {
        let gateway = &settings.gateway;
        Self {
            trusted_proxy_hops: settings.http.trusted_proxy_hops,
            failures: FailureGate::new(settings.auth.failures_per_address()),
            handshakes: KeyedRate::new(Rate {
                per_sec: gateway.handshakes_per_address_per_sec,
                burst: gateway.handshakes_per_address_burst,
            }),
            connections: AddressConnections::new(gateway.max_connections_per_address),
            writes: KeyedRate::new(Rate {
                per_sec: gateway.rest_writes_per_user_per_sec,
                burst: gateway.rest_writes_per_user_burst,
            }),
        }
    }

    pub fn address(&self, req: &HttpRequest) -> Option<IpAddr> {
        client_address(req, self.trusted_proxy_hops)
    }

    /// Verifies a token unless its address is shut out for failing too
    /// often; a token refused counts as one more failure.
    pub async fn verify(
        &self,
        verifier: &TokenVerifier,
        address: Option<IpAddr>,
        token: Result<String, AuthError>,
    ) -> Result<VerifiedToken, GatewayError> {
        if let Some(address) = address {
            self.failures.check(&address).map_err(Limited::Failures)?;
        }
        let verified = match token {
            Ok(token) => verifier.verify(&token).await,
            Err(missing) => Err(missing),
        };
        // Only guesses count: a missing, expired or revoked token is not
        // one (see `AuthError::is_guess`).
        if let (Err(err), Some(address)) = (&verified, address)
            && err.is_guess()
        {
            self.failures.failed(&address);
        }
        Ok(verified?)
    }

    /// A WebSocket handshake from `address`: within its rate and under its
    /// connection cap, the slot to hold for the connection's life.
    pub fn handshake(&self, address: Option<IpAddr>) -> Result<Option<AddressSlot>, GatewayError> {
        let Some(address) = address else {
            return Ok(None);
        };
        self.handshakes
            .check(&address)
            .map_err(Limited::Handshakes)?;
        Ok(Some(self.connections.admit(address)?))
    }

    /// One REST write (read, read-all, archive, preferences) by `user_id`.
    pub fn write(&self, user_id: &str) -> Result<(), GatewayError> {
        self.writes
            .check(&user_id.to_owned())
            .map_err(|wait| Limited::Writes(wait).into())
    }
}
