//! The authenticated user of a REST request: the inbox handlers' extractor,
//! verified through the gateway's verifier and its failure limits.

use actix_web::HttpRequest;
use futures_util::future::LocalBoxFuture;

use crate::auth::{AuthError, bearer_token};
use crate::error::GatewayError;
use crate::state::GatewayState;

/// The authenticated user of a REST request (`Authorization: Bearer <jwt>`),
/// verified through the gateway state's verifier and failure limits.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
}

impl actix_web::FromRequest for User {
    type Error = GatewayError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req
            .app_data::<actix_web::web::Data<GatewayState>>()
            .cloned();
        let address = state.as_ref().and_then(|state| state.clients.address(req));
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or(AuthError::Missing)?;
            let token = state
                .clients
                .verify(&state.verifier, address, token)
                .await?;
            Ok(User { id: token.user_id })
        })
    }
}
