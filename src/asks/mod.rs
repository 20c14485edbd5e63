//! What the agent asks a human: permission requests and questions. This
//! module is pure: it reads answers typed or reacted in chat and renders the
//! posts that ask and then record the answer. The bridge owns the pending
//! requests and the calls to OpenCode and Mattermost.

mod answer;
mod render;

pub use answer::{AnswerError, Reaction, parse_permission, parse_question, reaction};
pub(crate) use render::defuse;
pub use render::{Asked, PermissionOutcome, QuestionOutcome, permission_post, question_post};

#[cfg(test)]
mod tests;
