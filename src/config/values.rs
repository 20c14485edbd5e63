//! Parsing of values: [`Reader`] turns each raw setting into its type
//! (strings, secrets, URLs, booleans, numbers in range, durations, time
//! zones, Mattermost ids, channel types, extensions), recording the
//! effective value and any problem as it goes.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::report::closest;
use super::sources::RawSettings;
use super::{ChannelType, Entry, Origin, Problem, Secret};
use crate::store::{is_postgres_url, redact_database_url};

/// Where `OPENCODE_MM_DATABASE_URL` puts the state.
pub(super) enum DatabaseUrl {
    /// The whole URL: it may hold the password.
    Postgres(Secret),
    /// A `sqlite:` value: the file.
    Sqlite(PathBuf),
}

pub(super) fn derive_ws_url(site: &Url) -> Option<Url> {
    let scheme = if site.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    let text = format!(
        "{scheme}://{}/api/v4/websocket",
        site.as_str()
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .trim_end_matches('/')
    );
    Url::parse(&text).ok()
}

/// Reads typed values, recording each entry and problem as it goes.
pub(super) struct Reader<'a> {
    pub(super) raw: RawSettings,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Problem>,
    pub(super) entries: Vec<Entry>,
    pub(super) read: Vec<&'static str>,
}

impl Reader<'_> {
    /// The raw value (env wins over file); empty strings count as unset.
    fn get(&mut self, key: &'static str) -> Option<(String, Origin)> {
        self.read.push(key);
        if let Some(v) = (self.env)(key).filter(|v| !v.trim().is_empty()) {
            return Some((v.trim().to_owned(), Origin::Env));
        }
        self.raw
            .get(key)
            .filter(|(v, _)| !v.trim().is_empty())
            .map(|(v, o)| (v.trim().to_owned(), *o))
    }

    fn record(&mut self, key: &'static str, value: String, origin: Origin) {
        self.entries.push(Entry { key, value, origin });
    }

    pub(super) fn problem(&mut self, key: &'static str, message: String) {
        self.problems.push(Problem {
            key: key.into(),
            message,
        });
    }

    pub(super) fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, v.clone(), o);
                Some(v)
            }
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                None
            }
        }
    }

    pub(super) fn string_or(&mut self, key: &'static str, default: &str) -> String {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, v.clone(), o);
                v
            }
            None => {
                self.record(key, default.to_owned(), Origin::Default);
                default.to_owned()
            }
        }
    }

    pub(super) fn secret(&mut self, key: &'static str) -> Option<Secret> {
        match self.get(key) {
            Some((v, o)) => {
                self.record(key, "[redacted]".into(), o);
                Some(Secret::new(v))
            }
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                None
            }
        }
    }

    pub(super) fn path(&mut self, key: &'static str) -> Option<PathBuf> {
        self.string(key).map(PathBuf::from)
    }

    /// A `postgres://` URL (shown without its password) or a `sqlite:`
    /// path (`sqlite:/abs/state.db` or `sqlite:///abs/state.db`). Anything
    /// else is a problem and leaves SQLite at its usual place.
    pub(super) fn database_url(&mut self, key: &'static str) -> Option<DatabaseUrl> {
        let Some((v, o)) = self.get(key) else {
            self.record(key, "(unset)".into(), Origin::Default);
            return None;
        };
        let shown = redact_database_url(&v);
        self.record(key, shown.clone(), o);
        if is_postgres_url(&v) {
            return match Url::parse(&v) {
                Ok(_) => Some(DatabaseUrl::Postgres(Secret::new(v))),
                Err(e) => {
                    self.problem(
                        key,
                        format!(
                            "`{shown}` is not a valid URL ({e}); e.g. \
                             postgres://agent@db.example.com/opencode?sslmode=require \
                             (using SQLite)"
                        ),
                    );
                    None
                }
            };
        }
        let path = v
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("sqlite:"))
            .and_then(|_| v.get(7..))
            .map(|rest| rest.strip_prefix("//").unwrap_or(rest));
        match path {
            Some(path) if !path.is_empty() => Some(DatabaseUrl::Sqlite(PathBuf::from(path))),
            _ => {
                self.problem(
                    key,
                    format!(
                        "`{shown}` is neither a postgres:// URL nor a sqlite: path; e.g. \
                         postgres://agent@db.example.com/opencode or sqlite:/var/lib/omm/state.db \
                         (using SQLite)"
                    ),
                );
                None
            }
        }
    }

    fn parse_url(&mut self, key: &'static str, schemes: &[&str], example: &str) -> Option<Url> {
        let (v, o) = match self.get(key) {
            Some(x) => x,
            None => {
                self.record(key, "(unset)".into(), Origin::Default);
                return None;
            }
        };
        self.record(key, v.clone(), o);
        match Url::parse(&v) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => Some(u),
            Ok(u) => {
                self.problem(
                    key,
                    format!(
                        "`{v}` has scheme `{}`; expected {} (e.g. {example})",
                        u.scheme(),
                        schemes.join(" or ")
                    ),
                );
                None
            }
            Err(e) => {
                self.problem(
                    key,
                    format!("`{v}` is not a valid URL ({e}); e.g. {example}"),
                );
                None
            }
        }
    }

    /// The site URL; a trailing `/api/v4` (as the old plugin accepted) is removed.
    pub(super) fn site_url(&mut self, key: &'static str) -> Option<Url> {
        let mut url = self.parse_url(key, &["http", "https"], "https://chat.example.com")?;
        let path = url.path().trim_end_matches('/').to_owned();
        let path = path.strip_suffix("/api/v4").unwrap_or(&path).to_owned();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        Some(url)
    }

    /// The WebSocket URL; `/api/v4/websocket` is appended when missing.
    pub(super) fn ws_url(&mut self, key: &'static str) -> Option<Url> {
        let mut url = self.parse_url(
            key,
            &["ws", "wss", "http", "https"],
            "wss://chat.example.com/api/v4/websocket",
        )?;
        let scheme = match url.scheme() {
            "http" => "ws",
            "https" => "wss",
            s => s,
        }
        .to_owned();
        let path = url.path().trim_end_matches('/').to_owned();
        if !path.ends_with("/api/v4/websocket") {
            let base = path.strip_suffix("/api/v4").unwrap_or(&path);
            url.set_path(&format!("{base}/api/v4/websocket"));
        }
        let text = url.as_str().replacen(url.scheme(), &scheme, 1);
        Url::parse(&text).ok()
    }

    pub(super) fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        let Some((v, o)) = self.get(key) else {
            self.record(key, default.to_string(), Origin::Default);
            return default;
        };
        let parsed = match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        };
        match parsed {
            Some(b) => {
                self.record(key, b.to_string(), o);
                b
            }
            None => {
                self.problem(
                    key,
                    format!("`{v}` is not a boolean; use true or false (using {default})"),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
        }
    }

    pub(super) fn number(
        &mut self,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let Some((v, o)) = self.get(key) else {
            self.record(key, default.to_string(), Origin::Default);
            return default;
        };
        match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => {
                self.record(key, n.to_string(), o);
                n
            }
            Ok(n) => {
                self.problem(
                    key,
                    format!(
                        "{n} is out of range; use a number from {} to {} (using {default})",
                        range.start(),
                        range.end()
                    ),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
            Err(_) => {
                self.problem(
                    key,
                    format!("`{v}` is not a whole number (using {default})"),
                );
                self.record(key, default.to_string(), Origin::Default);
                default
            }
        }
    }

    pub(super) fn millis(
        &mut self,
        key: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Duration {
        Duration::from_millis(self.number(key, default, range))
    }

    /// An IANA time zone name; UTC when unset or unknown.
    pub(super) fn timezone(&mut self, key: &'static str) -> crate::tz::Zone {
        let Some(v) = self.string(key) else {
            if let Some(e) = self.entries.last_mut() {
                e.value = "UTC".into();
            }
            return crate::tz::Zone::utc();
        };
        match crate::tz::Zone::get(&v) {
            Some(tz) => tz,
            None => {
                self.problem(
                    key,
                    format!(
                        "`{v}` is not an IANA time zone; use a name such as \
                         America/New_York, Europe/Berlin or UTC (using UTC)"
                    ),
                );
                crate::tz::Zone::utc()
            }
        }
    }

    pub(super) fn user_id(&mut self, key: &'static str) -> Option<String> {
        let v = self.string(key)?;
        if is_mattermost_id(&v) {
            Some(v)
        } else {
            self.problem(
                key,
                format!(
                    "`{v}` is not a Mattermost id (26 lowercase letters and digits); \
                     copy it from the profile menu, not the username"
                ),
            );
            None
        }
    }

    pub(super) fn user_ids(&mut self, key: &'static str) -> Vec<String> {
        let Some(v) = self.string(key) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if is_mattermost_id(part) {
                ids.push(part.to_owned());
            } else {
                self.problem(
                    key,
                    format!(
                        "`{part}` is not a Mattermost user id (26 lowercase letters and digits); \
                         list ids separated by commas"
                    ),
                );
            }
        }
        ids
    }

    pub(super) fn channel_types(&mut self, key: &'static str) -> Vec<ChannelType> {
        let all = vec![
            ChannelType::Direct,
            ChannelType::Group,
            ChannelType::Open,
            ChannelType::Private,
        ];
        let Some((v, o)) = self.get(key) else {
            self.record(key, "D,G,O,P".into(), Origin::Default);
            return all;
        };
        let mut types = Vec::new();
        let mut bad = Vec::new();
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match ChannelType::from_code(part) {
                Some(t) if !types.contains(&t) => types.push(t),
                Some(_) => {}
                None => bad.push(part.to_owned()),
            }
        }
        types.sort();
        if !bad.is_empty() || types.is_empty() {
            // Fail closed: a typo must not open every channel type.
            let kept = if types.is_empty() {
                "none: the bot answers nowhere until this is fixed".to_owned()
            } else {
                types
                    .iter()
                    .map(|t| t.code().to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            self.problem(
                key,
                format!(
                    "`{v}` must list channel types from D (direct), G (group), O (public), \
                     P (private), e.g. D,G (serving only {kept})"
                ),
            );
        }
        let shown: Vec<String> = types.iter().map(|t| t.code().to_string()).collect();
        self.record(key, shown.join(","), o);
        types
    }

    pub(super) fn extensions(&mut self, key: &'static str) -> Vec<String> {
        match self.string_or(key, "*").as_str() {
            "*" => vec!["*".into()],
            v => v
                .split(',')
                .map(|p| p.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }

    /// File keys that no reader asked for are typos or unsupported settings.
    /// A setting nothing reads any more: set, it is a problem saying why.
    pub(super) fn retired(&mut self, key: &'static str, why: &str) {
        if self.get(key).is_some() {
            self.problem(
                key,
                format!("has no effect in this agent ({why}); remove it"),
            );
        }
    }

    pub(super) fn unknown_file_keys(&mut self) {
        let unknown: Vec<String> = self
            .raw
            .iter()
            .filter(|(k, (_, o))| *o == Origin::File && !self.read.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in unknown {
            let hint = closest(&key, &self.read)
                .map(|k| format!(" (did you mean `{}`?)", k.to_ascii_lowercase()))
                .unwrap_or_default();
            self.problems.push(Problem {
                message: format!(
                    "unknown key `{}` in the config file{hint}",
                    key.to_ascii_lowercase()
                ),
                key,
            });
        }
    }
}

/// Mattermost ids are 26 characters of lowercase ASCII letters and digits.
pub fn is_mattermost_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}
