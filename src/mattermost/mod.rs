//! The link to Mattermost: wire types ([`types`]), the REST client
//! ([`rest`]) with its shared, prioritised rate budget ([`budget`]), and the
//! WebSocket event stream ([`ws`]).

pub mod budget;
pub mod connection;
pub mod error;
pub mod probe;
pub mod rest;
pub mod types;
pub mod ws;

pub use budget::{Priority, RateBudget};
pub use error::MattermostError;
pub use rest::{NewPost, RestClient, RetryPolicy};
