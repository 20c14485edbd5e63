//! Reading the old plugin's JSON state files. Each file is checked as a
//! whole (size, JSON, version) and then each entry on its own, as the old
//! plugin itself did: one bad entry never costs the good ones, and every
//! refusal says which field is wrong and why.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::is_mattermost_id;

/// A state file larger than this is refused unread. The old plugin's files
/// hold a few hundred bytes per entry; this is tens of thousands of them.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// The only file format version the old plugin wrote.
const VERSION: u64 = 1;
/// Longest identifier accepted from the files (session and schedule ids).
const MAX_ID: usize = 128;

/// One entry of a list, or why it cannot be used.
pub type Parsed<T> = Result<T, String>;

/// A file that could be read: its entries in file order, or why none can be
/// read at all. `Ok(None)` means the file is not there.
pub fn read_list(path: &Path, list_key: &str) -> Result<Option<Vec<Value>>, String> {
    let Some(value) = read_json(path)? else {
        return Ok(None);
    };
    let Value::Object(mut top) = value else {
        return Err("it is not a JSON object".into());
    };
    check_version(&top)?;
    match top.remove(list_key) {
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(format!("`{list_key}` is not a list")),
        None => Err(format!("it has no `{list_key}` list")),
    }
}

/// The parsed JSON of a file, refusing huge or non-UTF-8 files before
/// parsing; `None` when it does not exist.
pub fn read_json(path: &Path) -> Result<Option<Value>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("it cannot be read: {e}")),
    };
    let size = file
        .metadata()
        .map_err(|e| format!("it cannot be read: {e}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "it is {size} bytes, over the {MAX_FILE_BYTES}-byte limit; the old plugin never \
             wrote one this large"
        ));
    }
    let mut text = String::new();
    // `take` as well: the file may grow between the size check and the read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("it cannot be read as UTF-8 text: {e}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is over the {MAX_FILE_BYTES}-byte limit"));
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("it is not valid JSON ({e})"))
}

pub fn check_version(top: &Map<String, Value>) -> Result<(), String> {
    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => Ok(()),
        Some(other) => Err(format!(
            "its version is {}, and only version {VERSION} is known",
            shorten(&other.to_string())
        )),
        None => Err("it has no `version`".into()),
    }
}

/// The fields of one entry, with errors that name the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub fn of(value: &'a Value) -> Parsed<Fields<'a>> {
        match value {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err("the entry is not a JSON object".into()),
        }
    }

    /// A string field that may be absent (or null); blank counts as absent.
    pub fn opt_str(&self, key: &str) -> Parsed<Option<&'a str>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{key}` is not a string")),
        }
    }

    pub fn str(&self, key: &str) -> Parsed<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| format!("`{key}` is missing"))
    }

    pub fn opt_bool(&self, key: &str) -> Parsed<Option<bool>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("`{key}` is not true or false")),
        }
    }

    /// A Mattermost id (26 lowercase letters and digits).
    pub fn mattermost_id(&self, key: &str) -> Parsed<&'a str> {
        let id = self.str(key)?;
        if is_mattermost_id(id) {
            Ok(id)
        } else {
            Err(format!("`{key}` {} is not a Mattermost id", quoted(id)))
        }
    }

    /// An opaque identifier (OpenCode session, old schedule): letters,
    /// digits, `_` and `-`, at most [`MAX_ID`] characters.
    pub fn token(&self, key: &str) -> Parsed<&'a str> {
        let id = self.str(key)?;
        if is_token(id) {
            Ok(id)
        } else {
            Err(format!(
                "`{key}` {} is not an identifier (letters, digits, _ and -)",
                quoted(id)
            ))
        }
    }

    /// An ISO 8601 time, as JavaScript's `toISOString` writes it.
    pub fn time(&self, key: &str) -> Parsed<DateTime<Utc>> {
        let text = self.str(key)?;
        DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("`{key}` {} is not an ISO 8601 time", quoted(text)))
    }
}

pub fn is_token(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A value from the file as it may be shown: quoted, cut short, with
/// control characters escaped (the file may hold anything).
pub fn quoted(text: &str) -> String {
    format!("{:?}", shorten(text))
}

fn shorten(text: &str) -> String {
    const SHOWN: usize = 60;
    if text.chars().count() <= SHOWN {
        text.to_owned()
    } else {
        let head: String = text.chars().take(SHOWN).collect();
        format!("{head}…")
    }
}
