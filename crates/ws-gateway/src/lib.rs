//! ws-gateway: authenticates users with a JWT, keeps their WebSocket
//! connections, and pushes each notification frame published on a user's
//! channel to every connection of that user on this instance.

pub mod auth;
pub mod cli;
pub mod error;
pub mod hub;
pub mod routes;
pub mod session;
pub mod startup;

pub use startup::Application;
