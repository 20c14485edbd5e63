//! The link to Mattermost: wire types ([`types`]), the REST client with its
//! shared rate budget, and the WebSocket event stream.

pub mod types;
pub mod ws;
