//! JSON-RPC 2.0 over stdio between the shim and the agent: wire types
//! ([`protocol`]), framing and dispatch ([`transport`]) and the agent's handle
//! for calling back into the shim ([`peer`]).

pub mod peer;
pub mod protocol;
pub mod transport;

pub use peer::{Peer, PeerError};
pub use transport::{NotificationSink, Shutdown, serve};
