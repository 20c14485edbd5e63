//! OpenCode events → Mattermost post texts. Pure logic, no I/O: the sessions engine
//! feeds a [`Turn`] with events, asks it for post texts, and uses a
//! [`Throttle`] per post to decide when to write them.
//!
//! - [`turn`]: the state of one assistant turn and what it renders;
//! - [`layout`]: post texts, rollover across posts, code fences;
//! - [`format`]: durations, costs, token counts;
//! - [`throttle`]: pacing of the edits of one post;
//! - [`quiet`]: agent text made safe for channels many people read.

pub mod format;
pub mod layout;
pub mod quiet;
pub mod throttle;
pub mod turn;

#[cfg(test)]
mod tests;

pub use layout::{Limits, MetaKind};
pub use quiet::quiet;
pub use throttle::{Pace, Throttle};
pub use turn::{Outcome, Summary, Turn, outcome_of};
