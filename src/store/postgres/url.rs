//! The database URL as people see it: with the password taken out, so it can
//! sit in a log line, a status answer or an error message.

use url::Url;

/// Shown in place of a password.
const REDACTED: &str = "[redacted]";

/// `url` with its password (in the user info or a `password=` query
/// parameter) replaced by `[redacted]`. Anything that does not parse as a URL
/// is shown as its scheme only: an unparsable value may hold the password
/// anywhere.
pub fn redact_database_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url.trim()) else {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        return match scheme {
            Some(scheme) => format!("{scheme}://{REDACTED}"),
            None => REDACTED.to_owned(),
        };
    };
    if parsed.password().is_some() && parsed.set_password(Some(REDACTED)).is_err() {
        return format!("{}://{REDACTED}", parsed.scheme());
    }
    let has_secret_param = parsed.query_pairs().any(|(k, _)| is_secret_param(&k));
    if has_secret_param {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `[` and `]` are kept readable: the value is for people, not parsers.
    parsed
        .as_str()
        .replace("%5Bredacted%5D", REDACTED)
        .replace("%5bredacted%5d", REDACTED)
}

/// libpq takes the password as a query parameter too.
fn is_secret_param(key: &str) -> bool {
    key.eq_ignore_ascii_case("password")
}

/// The password of `url`, if it names one, so error text from elsewhere can be
/// scrubbed of it as a last line of defence.
pub(super) fn password_of(url: &str) -> Option<String> {
    let parsed = Url::parse(url.trim()).ok()?;
    let from_user = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    from_user
        .or_else(|| {
            parsed
                .query_pairs()
                .find(|(k, _)| is_secret_param(k))
                .map(|(_, v)| v.into_owned())
        })
        .filter(|p| !p.is_empty())
}

/// Whether `url` holds a password, or may: one that does not parse is
/// treated as holding one.
pub fn database_url_has_password(url: &str) -> bool {
    Url::parse(url.trim()).is_err() || password_of(url).is_some()
}

/// Whether `url` names a PostgreSQL database (as opposed to a `sqlite:`
/// path): the scheme libpq accepts, in any case.
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.trim().split_once(':').map(|(s, _)| s).unwrap_or("");
    scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
}

/// `url` with libpq's `sslmode=verify-ca` or `verify-full` written as
/// `require`, which the driver knows: TLS here always verifies the chain and
/// the name, so both are met (and `verify-ca` exceeded). Other URLs are
/// returned as given.
pub(super) fn driver_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url.trim()) else {
        return url.to_owned();
    };
    let verifying =
        |v: &str| v.eq_ignore_ascii_case("verify-ca") || v.eq_ignore_ascii_case("verify-full");
    if !parsed
        .query_pairs()
        .any(|(k, v)| k == "sslmode" && verifying(&v))
    {
        return url.to_owned();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "sslmode" && verifying(&v) {
                "require".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

/// A schema name safe to put in a connection option unquoted.
pub(super) fn valid_schema(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    first_ok
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_verifying_modes_become_require() {
        for mode in ["verify-full", "verify-ca", "VERIFY-FULL"] {
            let url = format!("postgres://a:p%40ss@db/omm?sslmode={mode}&application_name=x");
            let got = driver_url(&url);
            assert_eq!(
                got,
                "postgres://a:p%40ss@db/omm?sslmode=require&application_name=x"
            );
            let config: tokio_postgres::Config = got.parse().unwrap();
            assert_eq!(
                config.get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
            assert_eq!(config.get_password(), Some(&b"p@ss"[..]));
        }
        for same in [
            "postgres://db/omm?sslmode=disable",
            "postgres://db/omm",
            "host=db",
        ] {
            assert_eq!(driver_url(same), same);
        }
    }
}
