//! Adding one entry to the `plugin` list of an OpenCode config file, in
//! place. OpenCode reads its config as JSONC (comments, trailing commas),
//! and people keep comments and their own key order there, so the file is
//! edited as text: the entry is inserted where it belongs and nothing else
//! moves. The edit is checked afterwards by reading both versions: every
//! other key must be unchanged and the entry must be there exactly once,
//! or the file is refused instead of written.

use serde_json::Value;

/// Why a config file cannot take the entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JsoncError {
    #[error("is not valid JSON or JSONC ({0})")]
    Invalid(String),
    #[error("does not hold a JSON object at the top")]
    NotAnObject,
    #[error("has a `plugin` that is not a list of strings")]
    PluginNotAList,
    #[error("could not be edited safely (the result would change more than the `plugin` list)")]
    Unsafe,
}

/// What [`add_plugin`] did.
#[derive(Debug, PartialEq)]
pub enum Added {
    /// The new text of the file.
    Inserted(String),
    /// The list already names the plugin: the entry that does.
    AlreadyThere(String),
}

/// Whether a `plugin` entry names the package `name` (any version of it).
pub fn names_package(entry: &str, name: &str) -> bool {
    entry == name || entry.strip_prefix(name).is_some_and(|v| v.starts_with('@'))
}

/// The file's meaning: comments and trailing commas dropped, then JSON.
pub fn parse(text: &str) -> Result<Value, JsoncError> {
    let plain = strip_trailing_commas(&blank_comments(text.as_bytes())?);
    let value: Value =
        serde_json::from_slice(&plain).map_err(|e| JsoncError::Invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(JsoncError::NotAnObject);
    }
    Ok(value)
}

/// The `plugin` entries of a parsed config (none when the key is absent).
pub fn plugins(config: &Value) -> Result<Vec<String>, JsoncError> {
    match config.get("plugin") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(JsoncError::PluginNotAList),
        Some(_) => Err(JsoncError::PluginNotAList),
    }
}

/// Add `entry` (a package name) to the top-level `plugin` list of `text`,
/// unless an entry there already names that package.
pub fn add_plugin(text: &str, entry: &str) -> Result<Added, JsoncError> {
    let before = parse(text)?;
    let existing = plugins(&before)?;
    if let Some(found) = existing.iter().find(|e| names_package(e, entry)) {
        return Ok(Added::AlreadyThere(found.clone()));
    }
    let quoted = Value::String(entry.to_owned()).to_string();
    let blank = blank_comments(text.as_bytes())?;
    let open = next_token(&blank, 0).ok_or(JsoncError::NotAnObject)?;
    let (at, insert) = match find_member(&blank, open, "plugin")? {
        Some(value_at) => {
            // `parse` proved it is an array: insert before its `]`, after
            // its last element (and its trailing comma, if any).
            let close = skip_value(&blank, value_at)? - 1;
            let last = last_token(&blank, close).unwrap_or(value_at);
            match blank[last] {
                b'[' => (last + 1, quoted),
                b',' => (last + 1, format!(" {quoted}")),
                _ => (last + 1, format!(", {quoted}")),
            }
        }
        None => {
            let empty = next_token(&blank, open + 1).is_some_and(|i| blank[i] == b'}');
            let comma = if empty { "" } else { "," };
            (open + 1, format!("\n  \"plugin\": [{quoted}]{comma}"))
        }
    };
    let mut edited = text.to_owned();
    edited.insert_str(at, &insert);
    // The safety net: the same document with one more plugin entry.
    let after = parse(&edited).map_err(|_| JsoncError::Unsafe)?;
    let mut expected = before;
    let mut list = existing;
    list.push(entry.to_owned());
    if let Some(map) = expected.as_object_mut() {
        map.insert("plugin".into(), Value::from(list));
    }
    if after != expected {
        return Err(JsoncError::Unsafe);
    }
    Ok(Added::Inserted(edited))
}

/// The text with every comment's bytes (and only those) made spaces, so
/// offsets stay those of the original. Strings are left alone.
fn blank_comments(b: &[u8]) -> Result<Vec<u8>, JsoncError> {
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'"', _) => i = string_end(b, i)?,
            (b'/', Some(b'/')) => {
                while i < b.len() && b[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let end = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map(|k| i + 2 + k + 2)
                    .ok_or_else(|| JsoncError::Invalid("a /* comment is not closed".into()))?;
                out[i..end].iter_mut().for_each(|c| {
                    if *c != b'\n' {
                        *c = b' '
                    }
                });
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// Commas followed only by whitespace and a closing bracket become spaces.
fn strip_trailing_commas(b: &[u8]) -> Vec<u8> {
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = string_end(b, i).unwrap_or(b.len()),
            b',' => {
                if next_token(b, i + 1).is_some_and(|k| matches!(b[k], b'}' | b']')) {
                    out[i] = b' ';
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Index just past the string whose opening quote is at `i`.
fn string_end(b: &[u8], mut i: usize) -> Result<usize, JsoncError> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(JsoncError::Invalid("a string is not closed".into()))
}

/// The first non-whitespace byte at or after `i`.
fn next_token(b: &[u8], i: usize) -> Option<usize> {
    (i..b.len()).find(|&k| !b[k].is_ascii_whitespace())
}

/// The last non-whitespace byte before `end`.
fn last_token(b: &[u8], end: usize) -> Option<usize> {
    (0..end).rev().find(|&k| !b[k].is_ascii_whitespace())
}

/// Index just past the value starting at `i` (comments already blanked).
fn skip_value(b: &[u8], i: usize) -> Result<usize, JsoncError> {
    let mut depth = 0usize;
    let mut k = i;
    while k < b.len() {
        match b[k] {
            b'"' => {
                k = string_end(b, k)?;
                if depth == 0 {
                    return Ok(k);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(k + 1);
                }
            }
            b',' if depth == 0 => return Ok(k),
            _ => {}
        }
        k += 1;
    }
    Ok(k)
}

/// Where the value of the top-level member `key` starts, if it is there.
/// `open` is the object's `{`.
fn find_member(b: &[u8], open: usize, key: &str) -> Result<Option<usize>, JsoncError> {
    let mut i = open + 1;
    loop {
        let Some(k) = next_token(b, i) else {
            return Ok(None);
        };
        match b[k] {
            b'}' => return Ok(None),
            b',' => i = k + 1,
            b'"' => {
                let end = string_end(b, k)?;
                let name: String = serde_json::from_slice(&b[k..end])
                    .map_err(|e| JsoncError::Invalid(e.to_string()))?;
                let colon = next_token(b, end).filter(|&c| b[c] == b':');
                let value = colon
                    .and_then(|c| next_token(b, c + 1))
                    .ok_or_else(|| JsoncError::Invalid(format!("no value for `{name}`")))?;
                if name == key {
                    return Ok(Some(value));
                }
                i = skip_value(b, value)?;
            }
            _ => return Err(JsoncError::Invalid("unexpected text in the object".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NAME: &str = "opencode-mattermost";

    fn added(text: &str) -> String {
        match add_plugin(text, NAME).unwrap() {
            Added::Inserted(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_list_is_added_first_and_keeps_everything_else() {
        let text = "{\n  // my model\n  \"model\": \"a/b\",\n  \"theme\": \"x\"\n}\n";
        let out = added(text);
        assert_eq!(
            out,
            "{\n  \"plugin\": [\"opencode-mattermost\"],\n  // my model\n  \"model\": \"a/b\",\n  \"theme\": \"x\"\n}\n"
        );
        assert_eq!(added("{}"), "{\n  \"plugin\": [\"opencode-mattermost\"]}");
    }

    #[test]
    fn an_existing_list_gets_the_entry_at_its_end() {
        assert_eq!(
            added(r#"{"plugin": ["a", "b"], "x": {"plugin": 1}}"#),
            r#"{"plugin": ["a", "b", "opencode-mattermost"], "x": {"plugin": 1}}"#
        );
        assert_eq!(
            added(r#"{"plugin": []}"#),
            r#"{"plugin": ["opencode-mattermost"]}"#
        );
        // JSONC: a trailing comma and a comment inside the list.
        assert_eq!(
            added("{\"plugin\": [\n  \"a\", // first\n],}"),
            "{\"plugin\": [\n  \"a\", \"opencode-mattermost\" // first\n],}"
        );
        // A key that only looks like `plugin` in a comment or a string.
        let tricky = "{/* \"plugin\": [] */ \"s\": \"\\\"plugin\\\": [\", \"plugin\": [\"z\"]}";
        let out = added(tricky);
        assert!(
            out.ends_with("\"plugin\": [\"z\", \"opencode-mattermost\"]}"),
            "{out}"
        );
    }

    #[test]
    fn registering_twice_changes_nothing() {
        let once = added(r#"{"plugin": ["a"]}"#);
        assert_eq!(
            add_plugin(&once, NAME).unwrap(),
            Added::AlreadyThere(NAME.into())
        );
        assert_eq!(
            add_plugin(r#"{"plugin": ["opencode-mattermost@0.1.0"]}"#, NAME).unwrap(),
            Added::AlreadyThere("opencode-mattermost@0.1.0".into())
        );
        // Another package whose name starts the same way is not ours.
        assert!(matches!(
            add_plugin(r#"{"plugin": ["opencode-mattermost-extra"]}"#, NAME).unwrap(),
            Added::Inserted(_)
        ));
    }

    #[test]
    fn files_that_cannot_take_the_entry_are_refused() {
        for (text, want) in [
            ("", "Invalid"),
            ("{\"plugin\": [\"a\"", "Invalid"),
            ("{\"a\": 1 /* open", "Invalid"),
            ("{\"a\": \"open}", "Invalid"),
            ("[1, 2]", "NotAnObject"),
            ("\"plugin\"", "NotAnObject"),
            (r#"{"plugin": "opencode-mattermost"}"#, "PluginNotAList"),
            (r#"{"plugin": [1]}"#, "PluginNotAList"),
            ("{\"a\": 1} trailing", "Invalid"),
        ] {
            let err = add_plugin(text, NAME).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{text:?}: {err:?}");
        }
    }
}
