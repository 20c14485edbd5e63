//! OpenCode's config files are JSON with comments (`//`, `/* */`) and
//! trailing commas allowed. This reads them: both are removed outside
//! strings, then the text is parsed as JSON.

use serde_json::Value;

/// The document, or serde's error (with line and column) for what is left.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(&without_trailing_commas(&without_comments(text)))
}

/// Comments replaced by spaces (newlines kept, so error positions hold).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A comma followed (after white space) by `}` or `]`, outside strings,
/// becomes a space.
fn without_trailing_commas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' {
                out.extend(chars.get(i + 1));
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            out.push(if matches!(next, Some('}' | ']')) {
                ' '
            } else {
                ','
            });
        } else {
            in_string = c == '"';
            out.push(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comments_and_trailing_commas_are_allowed_outside_strings() {
        let text = r#"{
  // the plugins
  "plugin": ["opencode-mattermost", /* pinned: */ "x",],
  "url": "http://a//b/*c*/",
  "quote": "say \"hi\", // not a comment",
}"#;
        assert_eq!(
            parse(text).unwrap(),
            json!({"plugin": ["opencode-mattermost", "x"], "url": "http://a//b/*c*/",
                   "quote": "say \"hi\", // not a comment"})
        );
    }

    #[test]
    fn broken_documents_are_errors_with_a_position() {
        let err = parse("{\n  \"plugin\": [\n}").unwrap_err();
        assert_eq!(err.line(), 3);
        assert!(parse("/* never closed").is_err());
        assert!(parse("").is_err());
        assert!(parse("{\"a\": 1,,}").is_err());
    }
}
