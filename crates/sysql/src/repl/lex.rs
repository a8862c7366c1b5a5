//! Where statements end in SQL text: semicolons outside string literals,
//! quoted identifiers and comments.

/// Where the scanner is within SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    /// Inside '...'; a doubled '' leaves and re-enters, which needs no special case.
    Single,
    /// Inside "..." (a quoted identifier).
    Double,
    /// After `--`, up to the end of the line.
    LineComment,
    /// Inside `/* */`, which nest.
    BlockComment(usize),
}

/// Splits `text` at the semicolons that end statements (not those inside string literals, quoted
/// identifiers or comments).
///
/// Returns the complete statements, trimmed and with their `;`, skipping empty ones, and the
/// unfinished rest, which is empty when it holds only whitespace and comments. A statement is
/// complete when the rest is empty.
pub fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut start = 0;
    scan(text, |i, c| {
        if c == ';' {
            if !is_blank(&text[start..i]) {
                statements.push(text[start..=i].trim().to_string());
            }
            start = i + 1;
        }
        true
    });
    let rest = &text[start..];
    let rest = if is_blank(rest) { "" } else { rest };
    (statements, rest.trim_start().to_string())
}

/// Whether `text` holds nothing but whitespace and comments.
pub fn is_blank(text: &str) -> bool {
    let mut blank = true;
    scan(text, |_, c| {
        blank = c.is_whitespace();
        blank
    });
    blank
}

/// Walks SQL text and calls `code` with the byte offset of each char outside comments, string
/// literals and quoted identifiers (the opening quote included), until `code` returns false.
fn scan(text: &str, mut code: impl FnMut(usize, char) -> bool) {
    let mut lex = Lex::Code;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        lex = match (lex, c, next) {
            (Lex::Code, '-', Some('-')) => {
                chars.next();
                Lex::LineComment
            }
            (Lex::Code, '/', Some('*')) => {
                chars.next();
                Lex::BlockComment(1)
            }
            // Every char of code reaches `code` exactly once, here, before the arms below.
            (Lex::Code, _, _) if !code(i, c) => return,
            (Lex::Code, '\'', _) => Lex::Single,
            (Lex::Code, '"', _) => Lex::Double,
            (Lex::Single, '\'', _) | (Lex::Double, '"', _) | (Lex::LineComment, '\n', _) => Lex::Code,
            (Lex::BlockComment(1), '*', Some('/')) => {
                chars.next();
                Lex::Code
            }
            (Lex::BlockComment(depth), '*', Some('/')) => {
                chars.next();
                Lex::BlockComment(depth - 1)
            }
            (Lex::BlockComment(depth), '/', Some('*')) => {
                chars.next();
                Lex::BlockComment(depth + 1)
            }
            (lex, _, _) => lex,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements() {
        // (input, complete statements, unfinished rest)
        let cases: &[(&str, &[&str], &str)] = &[
            ("select 1;", &["select 1;"], ""),
            ("select 1; select\n2;  select 3", &["select 1;", "select\n2;"], "select 3"),
            ("select 1", &[], "select 1"),
            (";; ;", &[], ""),
            // Semicolons in literals, quoted identifiers and comments don't count.
            ("select ';' as a; ", &["select ';' as a;"], ""),
            ("select 'it''s;' ;", &["select 'it''s;' ;"], ""),
            ("select \"a;b\";", &["select \"a;b\";"], ""),
            ("select '--';", &["select '--';"], ""),
            ("select 1 -- done;\n", &[], "select 1 -- done;\n"),
            ("select 1 -- done;\n;", &["select 1 -- done;\n;"], ""),
            ("select /* a; /* b; */ c; */ 1;", &["select /* a; /* b; */ c; */ 1;"], ""),
            // An open quote keeps the statement open across lines.
            ("select 'a;\nb", &[], "select 'a;\nb"),
            // Comments alone are no statement.
            ("select 1; -- bye", &["select 1;"], ""),
            ("-- one\n/* two */\n", &[], ""),
        ];
        for &(input, statements, rest) in cases {
            let (got, got_rest) = split_statements(input);
            assert_eq!(got, statements, "{input:?}");
            assert_eq!(got_rest, rest, "{input:?}");
        }
    }

    #[test]
    fn blank_is_whitespace_and_comments() {
        assert!(is_blank("  -- x\n /* y */ "));
        assert!(is_blank(""));
        assert!(!is_blank("-- x\nselect"));
        assert!(!is_blank("/* x */ ;"));
        assert!(!is_blank("''"));
    }
}
