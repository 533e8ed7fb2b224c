//! The `broker-lite` binary's commands besides the server itself: the client subcommands
//! ([`client`]) and the offline store check ([`verify`]).

pub mod client;
pub mod verify;
