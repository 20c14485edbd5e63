//! What loading found, for people: where each value came from ([`Origin`]),
//! the effective settings ([`Entry`], [`Config::describe`]) and what needs
//! fixing ([`Problem`]), with "did you mean" hints for misspelt keys.

use super::Config;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Env,
    File,
    Default,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Env => "env",
            Origin::File => "file",
            Origin::Default => "default",
        }
    }
}

/// A configuration value that could not be used, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// One line of the effective configuration, safe to show (secrets redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

impl Config {
    /// Render the effective configuration as `KEY = value (origin)` lines.
    pub fn describe(&self) -> String {
        let width = self.entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&format!(
                "  {:width$} = {} ({})\n",
                e.key,
                e.value,
                e.origin.label()
            ));
        }
        out
    }
}

/// The known key with the smallest edit distance, if it is close enough.
pub(super) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}
