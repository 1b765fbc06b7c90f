//! Text from callers (worker names, log lines, failure reasons) made safe to print: control
//! characters, terminal escapes included, become visible `\u{..}` escapes, and overlong text
//! is cut, so a hostile name cannot rewrite an operator's terminal or log.

/// Longest caller text put into the coordinator's own log, in characters.
const MAX_LOG_CHARS: usize = 512;

/// `text` with control characters escaped and cut to `MAX_LOG_CHARS` characters.
pub fn for_log(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LOG_CHARS));
    for (count, character) in text.chars().enumerate() {
        if count == MAX_LOG_CHARS {
            out.push('…');
            break;
        }
        if character.is_control() {
            out.extend(character.escape_unicode());
        } else {
            out.push(character);
        }
    }
    out
}

/// `text` for callers' displays: control characters other than newline and tab escaped, so
/// text from one caller (a worker's log line or failure reason) cannot carry terminal
/// escapes to another caller's terminal.
pub fn for_display(text: &str) -> String {
    if !text
        .chars()
        .any(|character| character.is_control() && !matches!(character, '\n' | '\t'))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        if character.is_control() && !matches!(character, '\n' | '\t') {
            out.extend(character.escape_unicode());
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_made_visible_and_long_text_is_cut() {
        assert_eq!(for_log("w1\u{1b}[2J\n"), "w1\\u{1b}[2J\\u{a}");
        assert_eq!(for_log("plain ünïcode"), "plain ünïcode");
        let long = "x".repeat(MAX_LOG_CHARS + 10);
        assert_eq!(for_log(&long).chars().count(), MAX_LOG_CHARS + 1);
    }

    #[test]
    fn displays_keep_lines_and_tabs_but_not_escapes() {
        assert_eq!(for_display("a\n\tb"), "a\n\tb");
        assert_eq!(for_display("\u{1b}]0;owned\u{7}"), "\\u{1b}]0;owned\\u{7}");
        assert_eq!(for_display("\r\u{9b}"), "\\u{d}\\u{9b}");
    }
}
