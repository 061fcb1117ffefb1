//! Syntax highlighting of a bot's Python source for the page: a small
//! tokenizer that splits the exact source into spans (comments, strings,
//! numbers, keywords, names after `def`/`class`, decorators) and leaves
//! everything else as plain text.
//!
//! The spans' text concatenated is the source byte for byte, so the page's
//! script can hash what it shows and compare it with the bot's announced
//! `code_hash`. Every span's text is escaped by the template like any other
//! string: a bot's source is as untrusted as a message body.

/// What a piece of the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    Plain,
    Comment,
    Str,
    Number,
    Keyword,
    /// The name a `def` or `class` introduces.
    Definition,
    Decorator,
}

impl Token {
    /// The stylesheet's class for the token (none for plain text).
    pub fn class(self) -> Option<&'static str> {
        match self {
            Token::Plain => None,
            Token::Comment => Some("tok-comment"),
            Token::Str => Some("tok-string"),
            Token::Number => Some("tok-number"),
            Token::Keyword => Some("tok-keyword"),
            Token::Definition => Some("tok-def"),
            Token::Decorator => Some("tok-decorator"),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "self",
];

/// Splits `src` into tokens; the pieces concatenate to `src`.
pub(crate) fn tokens(src: &str) -> Vec<(Token, &str)> {
    let mut out: Vec<(Token, &str)> = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    let mut plain_start = 0;
    let mut after_def = false;
    while i < b.len() {
        let c = b[i];
        if c == b'#' {
            let e = src[i..].find('\n').map_or(b.len(), |n| i + n);
            push(src, &mut out, &mut plain_start, Token::Comment, i, e);
            i = e;
        } else if let Some(e) = string_end(src, i) {
            push(src, &mut out, &mut plain_start, Token::Str, i, e);
            after_def = false;
            i = e;
        } else if c.is_ascii_digit() && (i == 0 || !is_ident(b[i - 1])) {
            let mut e = i;
            while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_' || b[e] == b'.') {
                e += 1;
            }
            push(src, &mut out, &mut plain_start, Token::Number, i, e);
            i = e;
        } else if c == b'@' && line_start(b, i) {
            let mut e = i + 1;
            while e < b.len() && (is_ident(b[e]) || b[e] == b'.') {
                e += 1;
            }
            push(src, &mut out, &mut plain_start, Token::Decorator, i, e);
            i = e;
        } else if is_ident_start(c) {
            let mut e = i;
            while e < b.len() && is_ident(b[e]) {
                e += 1;
            }
            let word = &src[i..e];
            if after_def {
                push(src, &mut out, &mut plain_start, Token::Definition, i, e);
                after_def = false;
            } else if KEYWORDS.contains(&word) {
                push(src, &mut out, &mut plain_start, Token::Keyword, i, e);
                after_def = word == "def" || word == "class";
            }
            i = e;
        } else {
            // Any other byte (ASCII punctuation, or a byte of a multi-byte
            // character): plain. Advance by whole characters.
            i += src[i..].chars().next().map_or(1, char::len_utf8);
            if !c.is_ascii_whitespace() {
                after_def = false;
            }
        }
    }
    if plain_start < b.len() {
        out.push((Token::Plain, &src[plain_start..]));
    }
    out
}

/// Appends the plain text before `s`, then `src[s..e]` as `t`.
fn push<'a>(
    src: &'a str,
    out: &mut Vec<(Token, &'a str)>,
    plain_start: &mut usize,
    t: Token,
    s: usize,
    e: usize,
) {
    if *plain_start < s {
        out.push((Token::Plain, &src[*plain_start..s]));
    }
    out.push((t, &src[s..e]));
    *plain_start = e;
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn line_start(b: &[u8], i: usize) -> bool {
    b[..i]
        .iter()
        .rev()
        .take_while(|&&c| c != b'\n')
        .all(|c| *c == b' ' || *c == b'\t')
}

/// Where a string literal starting at `i` (with an optional prefix such as
/// `r`, `b`, `f`, `rb`) ends, or `None` when none starts there. An
/// unterminated string runs to the end of its line (or of the source, when
/// triple-quoted).
fn string_end(src: &str, i: usize) -> Option<usize> {
    let b = src.as_bytes();
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let mut q = i;
    while q < b.len() && q - i < 2 && matches!(b[q].to_ascii_lowercase(), b'r' | b'b' | b'f' | b'u')
    {
        q += 1;
    }
    let quote = *b.get(q)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let raw = src[i..q].to_ascii_lowercase().contains('r');
    let triple = b.len() >= q + 3 && b[q + 1] == quote && b[q + 2] == quote;
    let mut j = if triple { q + 3 } else { q + 1 };
    while j < b.len() {
        match b[j] {
            b'\\' if !raw => j += 2,
            b'\\' => j += 2,
            b'\n' if !triple => return Some(j),
            c if c == quote => {
                if !triple {
                    return Some(j + 1);
                }
                if b.len() >= j + 3 && b[j + 1] == quote && b[j + 2] == quote {
                    return Some(j + 3);
                }
                j += 1;
            }
            _ => j += 1,
        }
    }
    Some(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(src: &str) -> String {
        tokens(src).iter().map(|(_, s)| *s).collect()
    }

    #[test]
    fn the_tokens_concatenate_to_the_exact_source() {
        for src in [
            include_str!("../../../bots/guess.py"),
            include_str!("../../../bots/blackjack.py"),
            "x = 'unterminated\ny = \"\"\"open",
            "s = r'\\' + b\"\\\"\" # é ü 中\n@deco\ndef f(): return 0x1F",
            "",
        ] {
            assert_eq!(joined(src), src);
        }
    }

    #[test]
    fn keywords_strings_comments_and_definitions_are_told_apart() {
        let t = tokens("def guess(n):  # pick\n    return \"hi\" if n else 42\n");
        let kinds: Vec<(Token, &str)> = t.into_iter().filter(|(k, _)| *k != Token::Plain).collect();
        assert_eq!(
            kinds,
            vec![
                (Token::Keyword, "def"),
                (Token::Definition, "guess"),
                (Token::Comment, "# pick"),
                (Token::Keyword, "return"),
                (Token::Str, "\"hi\""),
                (Token::Keyword, "if"),
                (Token::Keyword, "else"),
                (Token::Number, "42"),
            ]
        );
    }
}
