//! ws-gateway: authenticates users with a JWT, keeps their WebSocket
//! connections, delivers each user's notifications gapless and in order
//! (live, and from storage on resume), syncs read state across devices and
//! instances, and serves the user's inbox over REST.

pub mod auth;
pub mod budget;
pub mod cli;
pub mod client_frames;
pub mod connect;
pub mod error;
pub mod hub;
pub mod inbox;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod origins;
pub mod session;
pub mod startup;
pub mod state;
pub mod user;
pub mod written;

pub use startup::Application;
