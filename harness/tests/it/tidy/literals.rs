//! The string literals of a Rust file, in order, with comments, character
//! literals and lifetimes told apart: what a check of hand-written lists
//! reads, whatever the spacing between the items.

/// A string literal's text (escapes left as written) and where it is.
#[derive(Debug)]
pub(super) struct Literal {
    pub text: String,
    /// The byte offset of its opening quote.
    pub offset: usize,
    /// Its line, from 1.
    pub line: usize,
}

/// Every string literal of `source`, raw ones included.
pub(super) fn of(source: &str) -> Vec<Literal> {
    let bytes = source.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    let line = |offset: usize| source[..offset].matches('\n').count() + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'/' if bytes.get(at + 1) == Some(&b'/') => {
                at = source[at..].find('\n').map_or(bytes.len(), |n| at + n);
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at = source[at + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| at + n + 4);
            }
            b'r' if raw_start(bytes, at).is_some() => {
                let hashes = raw_start(bytes, at).unwrap_or(0);
                let open = at + 1 + hashes;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = source[open + 1..]
                    .find(&close)
                    .map_or(bytes.len(), |n| open + 1 + n);
                found.push(Literal {
                    text: source[open + 1..end].to_owned(),
                    offset: open,
                    line: line(open),
                });
                at = end + close.len();
            }
            b'"' => {
                let mut end = at + 1;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                found.push(Literal {
                    text: source[at + 1..end].to_owned(),
                    offset: at,
                    line: line(at),
                });
                at = end + 1;
            }
            // A character literal ('"', '\''), not a lifetime ('a).
            b'\'' if bytes.get(at + 1) == Some(&b'\\') => {
                at = source[at + 2..]
                    .find('\'')
                    .map_or(bytes.len(), |n| at + n + 3);
            }
            b'\'' if bytes.get(at + 2) == Some(&b'\'') => at += 3,
            _ => at += 1,
        }
    }
    found
}

/// The number of `#` of a raw string starting at `at` (`r"`, `r#"`), where
/// one does: the `r` not the end of an identifier.
fn raw_start(bytes: &[u8], at: usize) -> Option<usize> {
    let before = at.checked_sub(1).map(|b| bytes[b]);
    if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let hashes = bytes[at + 1..].iter().take_while(|&&b| b == b'#').count();
    (bytes.get(at + 1 + hashes) == Some(&b'"')).then_some(hashes)
}
