//! Commit messages that read as history in `git log --oneline` (SPEC section 9).
//!
//! One transition is one line, `pas: J-7 inbox -> assigned/director-code`, as before. A
//! batch keeps one such line per transition in its body, and its subject says what
//! happened, with a title where it fits: `pas: done "Write the parser" (coder-1), +3
//! more`. The engine gives each transition a headline ([`headline`]); the subject takes the
//! most newsworthy one (a card done, then failed, assigned, back in the inbox, new).

use crate::card::State;

/// Transition lines kept in one commit message body, so a 10,000-card batch stays readable.
pub(super) const MAX_BODY_LINES: usize = 2000;

/// The longest title a headline quotes, in characters.
const TITLE_MAX: usize = 48;

/// A person's words for one transition of card `id` (titled `title`) into `to`, by
/// `agent`, with a reason when it has one: `done "Write the parser" (coder-1)`.
pub fn headline(
    id: &str,
    title: Option<&str>,
    from_new: bool,
    to: State,
    agent: Option<&str>,
    reason: Option<&str>,
) -> String {
    let what = match title.map(clean).filter(|t| !t.is_empty()) {
        Some(t) => format!("\"{t}\""),
        None => id.to_string(),
    };
    let who = agent.map(|a| format!(" ({a})")).unwrap_or_default();
    let why = reason
        .map(|r| format!(": {}", cut(&clean(r), TITLE_MAX)))
        .unwrap_or_default();
    match to {
        State::Inbox if from_new => format!("new {what}"),
        State::Inbox => format!("back to the inbox {what}{why}"),
        State::Assigned => format!("assigned {what} to {}", agent.unwrap_or("?")),
        State::Review => format!("to review {what}{who}"),
        State::Done => format!("done {what}{who}"),
        State::Failed => format!("failed {what}{who}{why}"),
        State::Archived => format!("archived {what}"),
    }
}

/// One line, no control characters, at most [`TITLE_MAX`] characters.
fn clean(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(one.trim(), TITLE_MAX)
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", s[..i].trim_end()),
        None => s.to_string(),
    }
}

/// How newsworthy a headline is (lower first).
fn rank(h: &str) -> u8 {
    const ORDER: &[&str] = &[
        "done ",
        "to review ",
        "failed ",
        "assigned ",
        "back to the inbox ",
        "new ",
    ];
    ORDER
        .iter()
        .position(|p| h.starts_with(p))
        .map_or(ORDER.len() as u8, |i| i as u8)
}

/// The commit message of a batch: `lines` (one per transition or other change) and the
/// `headlines` of its transitions; `paths` counts the files when there is no line.
pub(super) fn batch_message(lines: &[String], headlines: &[String], paths: usize) -> String {
    match lines {
        [] => format!("pas: update {paths} file(s)"),
        [one] => one.clone(),
        _ => {
            let best = headlines
                .iter()
                .enumerate()
                .min_by_key(|(i, h)| (rank(h), *i))
                .map(|(_, h)| format!("pas: {h}"))
                .unwrap_or_else(|| lines[0].clone());
            let mut msg = format!("{best}, +{} more\n\n", lines.len() - 1);
            for line in lines.iter().take(MAX_BODY_LINES) {
                msg.push_str(line);
                msg.push('\n');
            }
            if lines.len() > MAX_BODY_LINES {
                msg.push_str(&format!("... and {} more\n", lines.len() - MAX_BODY_LINES));
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_headed_by_its_most_newsworthy_transition() {
        let lines: Vec<String> = [
            "pas: J-1 new",
            "pas: J-2 assigned/c -> done",
            "pas: J-3 new",
            "pas: J-4 new",
        ]
        .map(String::from)
        .to_vec();
        let heads = vec![
            headline("J-1", Some("Plan"), true, State::Inbox, None, None),
            headline(
                "J-2",
                Some("Write the parser"),
                false,
                State::Done,
                Some("coder-1"),
                None,
            ),
        ];
        let msg = batch_message(&lines, &heads, 4);
        assert!(
            msg.starts_with("pas: done \"Write the parser\" (coder-1), +3 more\n\npas: J-1 new\n"),
            "{msg}"
        );
        // Without headlines (registrations, rejections), the first line leads.
        assert!(batch_message(&lines, &[], 4).starts_with("pas: J-1 new, +3 more\n\n"));
        assert_eq!(batch_message(&lines[..1], &heads, 1), "pas: J-1 new");
    }

    #[test]
    fn a_card_going_to_review_says_whose_work_waits() {
        let lines: Vec<String> = ["pas: J-1 new", "pas: J-2 assigned/c -> review"]
            .map(String::from)
            .to_vec();
        let heads = vec![
            headline("J-1", Some("Plan"), true, State::Inbox, None, None),
            headline("J-2", Some("Fix"), false, State::Review, Some("c"), None),
        ];
        assert!(batch_message(&lines, &heads, 2).starts_with("pas: to review \"Fix\" (c), +1 more"));
    }

    #[test]
    fn titles_are_one_short_line() {
        let h = headline(
            "J",
            Some("a\nvery long title that goes on and on and on past the limit"),
            false,
            State::Failed,
            None,
            Some("timeout"),
        );
        assert!(
            !h.contains('\n') && h.contains('…') && h.ends_with(": timeout"),
            "{h}"
        );
        assert_eq!(
            headline("J-9", None, false, State::Assigned, Some("a"), None),
            "assigned J-9 to a"
        );
    }

    #[test]
    fn long_batches_are_capped() {
        let lines: Vec<String> = (0..2005).map(|i| format!("pas: J-{i} new")).collect();
        let msg = batch_message(&lines, &[], 2005);
        assert!(msg.starts_with("pas: J-0 new, +2004 more\n\npas: J-0 new\n"));
        assert!(msg.ends_with("pas: J-1999 new\n... and 5 more\n"));
    }
}
