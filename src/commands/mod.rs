//! The commands feature: what people do with sessions from chat and from
//! the session tools. Each action is one operation in [`ops`]; the router's
//! `!command` parser and the tools call them.

pub mod fleet;
pub mod ops;

pub use ops::{Choices, Here};
