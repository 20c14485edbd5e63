//! The numbered list of close matches, and reading the author's answer.
//!
//! One list per message: the files of every ambiguous reference are
//! numbered in one sequence, so one answer (`1,3`) covers them all; `0`
//! alone sends the prompt without the listed files (clear matches still
//! go). An answer is only digits, commas and spaces; anything else in the
//! thread is an ordinary message.

use super::find::{Found, MAX_LISTED};
use crate::files::safety::quote;

/// One numbered file of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The reference it answers, without `!!`.
    pub reference: String,
    /// Relative to the project.
    pub path: String,
    /// How many more files matched the reference than were listed.
    pub more: usize,
}

/// What a reply to a list is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not shaped like an answer: an ordinary message.
    NotAnAnswer,
    /// Meant as an answer but unusable: what to say.
    Invalid(String),
    /// The chosen numbers (1-based, in the order given, each once); empty
    /// for `0`.
    Picks(Vec<usize>),
}

/// Longest answer read: a list has at most [`MAX_LISTED`] files per
/// reference, so a real answer is short.
const MAX_ANSWER_CHARS: usize = 200;

/// Read `text` as an answer to a list of `count` files.
pub fn parse_answer(text: &str, count: usize) -> Answer {
    let text = text.trim();
    if text.is_empty()
        || text.chars().count() > MAX_ANSWER_CHARS
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        || !text.chars().any(|c| c.is_ascii_digit())
    {
        return Answer::NotAnAnswer;
    }
    let range = || {
        Answer::Invalid(format!(
            ":grey_question: Choose numbers from 1 to {count} (e.g. `1,3`), or `0` to send your \
             prompt without these files."
        ))
    };
    let mut picks: Vec<usize> = Vec::new();
    let mut zero = false;
    for word in text.split([',', ' ']).filter(|w| !w.is_empty()) {
        match word.parse::<usize>() {
            Ok(0) => zero = true,
            Ok(n) if n <= count => {
                if !picks.contains(&n) {
                    picks.push(n);
                }
            }
            _ => return range(),
        }
    }
    if zero && !picks.is_empty() {
        return Answer::Invalid(
            ":grey_question: `0` sends none of the listed files: give it alone, or give only \
             the numbers of the files to send."
                .to_owned(),
        );
    }
    Answer::Picks(picks)
}

/// Why a message's references stop its prompt: one line per reference that
/// matched nothing or only files that may not be sent; empty when none.
pub fn problems(tokens: &[String], found: &[Found], truncated: bool) -> String {
    let mut lines = Vec::new();
    for (token, found) in tokens.iter().zip(found) {
        let shown = quote(token);
        match found {
            Found::NoMatch => lines.push(format!(
                "- `!!{shown}`: no file in this project matches{}",
                if truncated {
                    " (only the first files of this very large project were searched)"
                } else {
                    ""
                }
            )),
            Found::Refused(why) => lines.push(format!("- `!!{shown}`: {why}")),
            Found::One(_) | Found::Several { .. } => {}
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    format!(
        ":mag: **Nothing was sent to OpenCode:** a file reference did not resolve.\n{}\n\
         _Fix the reference and send the message again (files ignored by `.gitignore` are \
         never offered; inside backticks, `!!` is plain text)._",
        lines.join("\n")
    )
}

/// Split resolved references into the clear ones (into `chosen`) and the
/// numbered list of the rest (each gets an empty entry in `chosen`, filled
/// by [`apply`]).
pub fn listing(
    tokens: &[String],
    found: &[Found],
    chosen: &mut Vec<(String, Vec<String>)>,
) -> Vec<Listed> {
    let mut listed = Vec::new();
    for (token, found) in tokens.iter().zip(found) {
        match found {
            Found::One(path) => chosen.push((token.clone(), vec![path.clone()])),
            Found::Several {
                listed: paths,
                more,
            } => {
                chosen.push((token.clone(), Vec::new()));
                listed.extend(paths.iter().map(|p| Listed {
                    reference: token.clone(),
                    path: p.clone(),
                    more: *more,
                }));
            }
            Found::NoMatch | Found::Refused(_) => {}
        }
    }
    listed
}

/// Add the picked files to their references in `chosen`.
pub fn apply(listed: &[Listed], picks: &[usize], chosen: &mut [(String, Vec<String>)]) {
    for pick in picks {
        let Some(item) = pick.checked_sub(1).and_then(|i| listed.get(i)) else {
            continue;
        };
        if let Some((_, files)) = chosen.iter_mut().find(|(r, _)| *r == item.reference) {
            files.push(item.path.clone());
        }
    }
}

/// The list as posted. `mention` is the bot's name where a reply must
/// mention it to reach the bot (outside DMs).
pub fn list_text(listed: &[Listed], author: &str, replaced: bool, mention: Option<&str>) -> String {
    let how = match mention {
        Some(bot) => format!("Reply mentioning @{bot} with the numbers"),
        None => "Reply with the numbers".to_owned(),
    };
    let mut out = format!(
        ":mag: **Several files match.** {how} of the files to send (e.g. `1,3`), or `0` to \
         send none of them; then your prompt runs."
    );
    let mut current: Option<&str> = None;
    for (i, item) in listed.iter().enumerate() {
        if current != Some(item.reference.as_str()) {
            if let Some(previous) = current {
                more_line(&mut out, listed, previous);
            }
            current = Some(&item.reference);
            out.push_str(&format!("\n`!!{}`:", quote(&item.reference)));
        }
        out.push_str(&format!(
            "\n{}. `{}`",
            i + 1,
            quote(&item.path).replace('`', "'")
        ));
    }
    if let Some(last) = current {
        more_line(&mut out, listed, last);
    }
    if replaced {
        out.push_str("\n_This replaces the earlier list in this thread._");
    }
    out.push_str(&format!(
        "\n_Only @{author} can answer; the list expires in {} minutes._",
        super::LIST_TTL.as_secs() / 60
    ));
    out
}

fn more_line(out: &mut String, listed: &[Listed], reference: &str) {
    let more = listed
        .iter()
        .find(|l| l.reference == reference)
        .map_or(0, |l| l.more);
    if more > 0 {
        out.push_str(&format!(
            "\n_…and {more} more (the best {MAX_LISTED} are listed): type more of the path to \
             narrow it._"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_numbers_in_range_or_zero_alone() {
        assert_eq!(parse_answer("1,3", 4), Answer::Picks(vec![1, 3]));
        assert_eq!(parse_answer(" 3, 1 ,3 ", 4), Answer::Picks(vec![3, 1]));
        assert_eq!(parse_answer("2 4", 4), Answer::Picks(vec![2, 4]));
        assert_eq!(parse_answer("0", 4), Answer::Picks(vec![]));
        for bad in ["5", "1,5", "99999999999999999999999", "0,1"] {
            assert!(
                matches!(parse_answer(bad, 4), Answer::Invalid(_)),
                "{bad:?}"
            );
        }
        for ordinary in ["", "  ", ",", "1.", "one", "1 please", "-1", "１", "1\n2"] {
            assert_eq!(
                parse_answer(ordinary, 4),
                Answer::NotAnAnswer,
                "{ordinary:?}"
            );
        }
        assert_eq!(parse_answer(&"1,".repeat(200), 4), Answer::NotAnAnswer);
    }

    #[test]
    fn one_list_numbers_every_ambiguous_reference_and_zero_keeps_the_clear_ones() {
        let tokens = vec!["handler".to_owned(), "main.rs".to_owned(), "cfg".to_owned()];
        let found = vec![
            Found::Several {
                listed: vec!["a/handler.ts".into(), "b/handler.ts".into()],
                more: 0,
            },
            Found::One("src/main.rs".into()),
            Found::Several {
                listed: vec!["cfg.toml".into(), "x/cfg.rs".into()],
                more: 3,
            },
        ];
        let mut chosen = Vec::new();
        let listed = listing(&tokens, &found, &mut chosen);
        let text = list_text(&listed, "alice", false, None);
        assert!(text.starts_with(":mag: **Several files match.** Reply with the numbers"));
        let in_channel = list_text(&listed, "alice", true, Some("bot"));
        assert!(
            in_channel.contains("Reply mentioning @bot with the numbers"),
            "{in_channel}"
        );
        assert!(
            in_channel.contains("replaces the earlier list"),
            "{in_channel}"
        );
        assert!(
            text.contains("`!!handler`:\n1. `a/handler.ts`\n2. `b/handler.ts`"),
            "{text}"
        );
        assert!(
            text.contains("`!!cfg`:\n3. `cfg.toml`\n4. `x/cfg.rs`\n_…and 3 more"),
            "{text}"
        );
        assert!(text.contains("Only @alice can answer"), "{text}");
        let mut picked = chosen.clone();
        apply(&listed, &[1, 4], &mut picked);
        assert_eq!(
            picked,
            vec![
                ("handler".to_owned(), vec!["a/handler.ts".to_owned()]),
                ("main.rs".to_owned(), vec!["src/main.rs".to_owned()]),
                ("cfg".to_owned(), vec!["x/cfg.rs".to_owned()]),
            ]
        );
        let mut none = chosen.clone();
        apply(&listed, &[], &mut none);
        assert_eq!(
            none[1].1,
            vec!["src/main.rs".to_owned()],
            "0 keeps clear matches"
        );
        assert!(none[0].1.is_empty() && none[2].1.is_empty());
    }

    #[test]
    fn problems_name_each_unresolved_reference() {
        let tokens = vec!["nope".to_owned(), "ok".to_owned(), "../x".to_owned()];
        let found = vec![
            Found::NoMatch,
            Found::One("ok.rs".into()),
            Found::Refused("`../x` resolves to `/x`, outside".into()),
        ];
        let text = problems(&tokens, &found, false);
        assert!(text.starts_with(":mag: **Nothing was sent"), "{text}");
        assert!(
            text.contains("- `!!nope`: no file in this project matches\n"),
            "{text}"
        );
        assert!(
            text.contains("- `!!../x`: `../x` resolves to `/x`, outside"),
            "{text}"
        );
        assert!(!text.contains("!!ok"), "{text}");
        assert!(problems(&tokens[1..2], &found[1..2], false).is_empty());
    }
}
