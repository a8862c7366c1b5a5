//! Redaction of payload text (`--redact-payload`): SQL literals become `?`,
//! HTTP header values and query-string values become `***`.

use datafusion::sql::sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// What a redacted value is shown as.
pub const MASK: &str = "***";

/// `/search?q=secret&page=2` becomes `/search?q=***&page=***`.
pub fn query_string(path: &str) -> String {
    match path.split_once('?') {
        None => path.to_string(),
        Some((base, query)) => {
            let parts: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}={MASK}"),
                    None => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", parts.join("&"))
        }
    }
}

/// Every literal (strings, numbers) in a statement replaced by `?`, keeping
/// its shape. Text the tokenizer cannot read is replaced whole.
pub fn sql(text: &str, mysql: bool) -> String {
    let dialect: &dyn Dialect = if mysql { &MySqlDialect {} } else { &PostgreSqlDialect {} };
    let Ok(tokens) = Tokenizer::new(dialect, text).tokenize() else {
        return "(redacted)".to_string();
    };
    let mut out = String::with_capacity(text.len());
    for token in tokens {
        match token {
            Token::Number(..) | Token::SingleQuotedString(_) | Token::DoubleQuotedString(_) if mysql => out.push('?'),
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_) => out.push('?'),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            sql("SELECT * FROM users WHERE name = 'bob' AND id = 42 OR 1=1", false),
            "SELECT * FROM users WHERE name = ? AND id = ? OR ?=?"
        );
        assert_eq!(sql("select \"x\" from t where a = \"s\"", true), "select ? from t where a = ?");
        assert_eq!(sql("select $$secret$$", false), "select ?");
    }

    #[test]
    fn query_values_are_masked() {
        assert_eq!(query_string("/a?q=secret&page=2&flag"), "/a?q=***&page=***&flag");
        assert_eq!(query_string("/plain"), "/plain");
    }
}
