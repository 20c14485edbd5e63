//! A string that must never be printed: tokens and passwords.

use std::fmt;

/// Holds a secret value. `Debug` and `Display` always print `[redacted]`, so a
/// secret can sit inside any struct that is logged or formatted without leaking.
/// The only way to read it is [`Secret::expose`], which makes every use grep-able.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the one place that needs it (an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace every occurrence of the secret in `text`. Used on error messages
    /// that echo server responses or URLs, as a last line of defence.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_owned();
        }
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let s = Secret::new("xoxb-very-secret-token");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "xoxb-very-secret-token");
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let s = Secret::new("abcd1234");
        assert_eq!(
            s.scrub("token abcd1234 and again abcd1234"),
            "token [redacted] and again [redacted]"
        );
    }
}
