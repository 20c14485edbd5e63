//! Reading answers: emoji reactions, permission words and question replies.

use crate::opencode::PermissionReply;
use crate::opencode::events::QuestionInfo;

/// The longest typed answer passed on; longer text is refused rather than
/// silently cut, so the agent never acts on half an answer.
const MAX_ANSWER_CHARS: usize = 4000;

/// What an emoji reaction on a bot post asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Allow a permission request once.
    Allow,
    /// Deny a permission request.
    Deny,
    /// Abort the running turn.
    Stop,
    /// Send the thread's last prompt again.
    Retry,
    /// Delete the session's temporary files.
    Clear,
    /// Run a post that was caught up too late and only offered.
    Run,
}

/// Mattermost emoji names (no colons) mapped to what they ask for; the
/// aliases are the names Mattermost's picker offers for the same glyph.
pub fn reaction(emoji_name: &str) -> Option<Reaction> {
    Some(match emoji_name {
        "white_check_mark" | "heavy_check_mark" | "ballot_box_with_check" => Reaction::Allow,
        "x" | "negative_squared_cross_mark" | "no_entry_sign" => Reaction::Deny,
        "octagonal_sign" | "stop_sign" | "stop_button" => Reaction::Stop,
        "repeat" | "arrows_counterclockwise" => Reaction::Retry,
        "wastebasket" | "trash" => Reaction::Clear,
        "arrow_forward" => Reaction::Run,
        _ => return None,
    })
}

/// A typed answer to a permission request, or `None` when the text is not
/// one (it is then a prompt like any other).
pub fn parse_permission(text: &str) -> Option<PermissionReply> {
    let word = text
        .trim()
        .trim_end_matches(['.', '!'])
        .trim()
        .to_lowercase();
    match word.as_str() {
        "allow" | "allow once" | "once" | "yes" | "y" | "approve" | "ok" => {
            Some(PermissionReply::Once)
        }
        "always" | "allow always" | "always allow" => Some(PermissionReply::Always),
        "deny" | "no" | "n" | "reject" => Some(PermissionReply::Reject),
        _ => None,
    }
}

/// Why a reply is not a usable answer to a question; the text is what the
/// person is told, and the question stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("The answer is empty. Reply with a number from 1 to {max}{}.", typed_hint(*custom))]
    Empty { max: usize, custom: bool },
    #[error("There is no option {got}: pick a number from 1 to {max}.")]
    NoSuchOption { got: String, max: usize },
    #[error("This question takes one answer: reply with a single number from 1 to {max}.")]
    OneOnly { max: usize },
    #[error("This question does not take typed answers: reply with a number from 1 to {max}.")]
    OptionsOnly { max: usize },
    #[error("The answer is {chars} characters long; the limit is {max}.")]
    TooLong { chars: usize, max: usize },
}

fn typed_hint(custom: bool) -> &'static str {
    if custom { " or type your answer" } else { "" }
}

/// Read a reply to one question: option numbers (several, comma or space
/// separated, for a multi-select question), an option's label, or free text
/// when the question allows it. The answer is a list of labels or the text.
pub fn parse_question(text: &str, question: &QuestionInfo) -> Result<Vec<String>, AnswerError> {
    let text = text.trim();
    let max = question.options.len();
    let custom = question.allows_custom() || max == 0;
    if text.is_empty() {
        return Err(AnswerError::Empty { max, custom });
    }
    let chars = text.chars().count();
    if chars > MAX_ANSWER_CHARS {
        return Err(AnswerError::TooLong {
            chars,
            max: MAX_ANSWER_CHARS,
        });
    }
    if max > 0
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c.is_whitespace())
    {
        let mut picked: Vec<String> = Vec::new();
        for token in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
        {
            let label = token
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .and_then(|n| question.options.get(n - 1))
                .map(|o| o.label.clone())
                .ok_or_else(|| AnswerError::NoSuchOption {
                    got: token.chars().take(12).collect(),
                    max,
                })?;
            if !picked.contains(&label) {
                picked.push(label);
            }
        }
        if picked.is_empty() {
            return Err(AnswerError::Empty { max, custom });
        }
        if picked.len() > 1 && !question.multiple {
            return Err(AnswerError::OneOnly { max });
        }
        return Ok(picked);
    }
    let by_label = |piece: &str| {
        question
            .options
            .iter()
            .find(|o| o.label.trim().eq_ignore_ascii_case(piece.trim()))
            .map(|o| o.label.clone())
    };
    if let Some(label) = by_label(text) {
        return Ok(vec![label]);
    }
    if question.multiple && text.contains(',') {
        let labels: Option<Vec<String>> = text.split(',').map(by_label).collect();
        if let Some(mut labels) = labels {
            labels.dedup();
            return Ok(labels);
        }
    }
    if custom {
        Ok(vec![text.to_owned()])
    } else {
        Err(AnswerError::OptionsOnly { max })
    }
}
