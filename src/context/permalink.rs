//! Reading a post permalink (`https://chat.example.com/team/pl/<post id>`)
//! typed in chat. Only links to the configured server count: a link to any
//! other host, or one smuggling a user name or an odd scheme, is refused
//! before anything is fetched.

/// Why a typed permalink was refused; shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermalinkError {
    #[error("that is not a link to a post (expected `{example}`)")]
    Malformed { example: String },
    #[error("that link points to another server ({0}); only posts on this server can be merged")]
    OtherServer(String),
}

/// Post ids are 26 lowercase letters and digits.
fn is_post_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_team_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The post id a permalink names, if it is a permalink on `site` (the
/// configured site URL, possibly with a subpath).
pub fn parse(link: &str, site: &url::Url) -> Result<String, PermalinkError> {
    let example = format!(
        "{}/<team>/pl/<post id>",
        site.as_str().trim_end_matches('/')
    );
    let malformed = || PermalinkError::Malformed {
        example: example.clone(),
    };
    // Mattermost wraps links typed as `<url>`; Markdown links are not
    // unwrapped: the visible text could differ from the target.
    let link = link.trim();
    let link = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix('>'))
        .unwrap_or(link);
    if link.len() > 2048 || link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(malformed());
    }
    let url = url::Url::parse(link).map_err(|_| malformed())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(malformed());
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let same_server = url.scheme() == site.scheme()
        && url.host_str().map(str::to_ascii_lowercase)
            == site.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == site.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if !same_server {
        return Err(PermalinkError::OtherServer(if host.is_empty() {
            "no host".into()
        } else {
            host
        }));
    }
    let base = site.path().trim_end_matches('/');
    let rest = url
        .path()
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(malformed)?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [team, "pl", id] if (is_team_name(team) || *team == "_redirect") && is_post_id(id) => {
            Ok((*id).to_owned())
        }
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abcdefghij0123456789klmnop";

    fn site(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn permalinks_on_this_server_give_their_post_id() {
        let s = site("https://chat.example.com");
        for link in [
            format!("https://chat.example.com/eng/pl/{ID}"),
            format!("  <https://CHAT.example.com/eng/pl/{ID}>  "),
            format!("https://chat.example.com:443/eng-team_2/pl/{ID}/"),
            format!("https://chat.example.com/_redirect/pl/{ID}"),
            format!("https://chat.example.com/eng/pl/{ID}?x=1#frag"),
        ] {
            assert_eq!(parse(&link, &s), Ok(ID.to_owned()), "{link}");
        }
        let sub = site("https://example.com/chat/");
        assert_eq!(
            parse(&format!("https://example.com/chat/eng/pl/{ID}"), &sub),
            Ok(ID.to_owned())
        );
        assert!(parse(&format!("https://example.com/eng/pl/{ID}"), &sub).is_err());
    }

    #[test]
    fn other_servers_are_refused() {
        let s = site("https://chat.example.com");
        for link in [
            format!("https://evil.example.com/eng/pl/{ID}"),
            format!("https://chat.example.com.evil.org/eng/pl/{ID}"),
            format!("https://chat.example.com@evil.org/eng/pl/{ID}"),
            format!("https://user:pw@chat.example.com/eng/pl/{ID}"),
            format!("https://chat.example.com:8443/eng/pl/{ID}"),
            format!("http://chat.example.com:443/eng/pl/{ID}"),
        ] {
            assert!(
                matches!(parse(&link, &s), Err(PermalinkError::OtherServer(_))),
                "{link}"
            );
        }
    }

    #[test]
    fn hostile_and_malformed_links_are_refused() {
        let s = site("https://chat.example.com");
        let long = format!("https://chat.example.com/eng/pl/{ID}?{}", "a".repeat(5000));
        for link in [
            "",
            "not a link",
            ID,
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ftp://chat.example.com/eng/pl/abcdefghij0123456789klmnop",
            "https://chat.example.com/eng/pl/",
            "https://chat.example.com/eng/pl/short",
            "https://chat.example.com/eng/pl/ABCDEFGHIJ0123456789KLMNOP",
            "https://chat.example.com/eng/pl/abcdefghij0123456789klmnop/extra",
            "https://chat.example.com/eng/channels/town-square",
            "https://chat.example.com/../eng/pl/abcdefghij0123456789klmnop/..",
            "https://chat.example.com/Eng Team/pl/abcdefghij0123456789klmnop",
            "https://chat.example.com/eng/pl/abcdefghij0123456789klmnop\nmore",
            "[here](https://chat.example.com/eng/pl/abcdefghij0123456789klmnop)",
            long.as_str(),
        ] {
            assert!(
                matches!(parse(link, &s), Err(PermalinkError::Malformed { .. })),
                "{link:?} → {:?}",
                parse(link, &s)
            );
        }
        let e = parse("nope", &s).unwrap_err().to_string();
        assert!(
            e.contains("https://chat.example.com/<team>/pl/<post id>"),
            "{e}"
        );
    }
}
