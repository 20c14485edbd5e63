//! The asks feature: permission requests and questions from OpenCode,
//! answered from chat.
//!
//! [`answer`] and [`render`] are pure: they read answers typed or reacted in
//! chat and render the posts that ask and then record the answer. [`chat`]
//! owns the requests waiting in chat ([`Asks`]) and the calls to OpenCode
//! and Mattermost.

mod answer;
pub mod chat;
mod render;

pub use answer::{AnswerError, Reaction, parse_permission, parse_question, reaction};
pub use chat::Asks;
#[cfg(test)]
use render::defuse;
pub use render::{
    Asked, PermissionOutcome, QuestionOutcome, SHOWN_CHARS, long_command, permission_post,
    question_post, visible,
};

#[cfg(test)]
mod tests;
