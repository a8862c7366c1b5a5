//! Tab completion: commands after a leading backslash and their choices after
//! them (from the one command table), file names after `\i`, otherwise
//! tables, columns and keywords.

use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::Helper;

use super::commands::COMMANDS;

/// SQL words offered by tab completion next to table and column names.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "ALL", "AND", "AS", "ASC", "AVG", "BETWEEN", "BY", "CASE", "CAST", "COUNT", "CREATE", "CROSS",
    "DESC", "DESCRIBE", "DISTINCT", "DROP", "ELSE", "END", "EXCEPT", "EXISTS", "EXPLAIN", "FALSE",
    "FIRST", "FROM", "FULL", "GROUP", "HAVING", "ILIKE", "IN", "INNER", "INTERSECT", "INTERVAL",
    "IS", "JOIN", "LAST", "LEFT", "LIKE", "LIMIT", "MAX", "MIN", "NOT", "NULL", "NULLS", "OFFSET",
    "ON", "OR", "ORDER", "OUTER", "OVER", "PARTITION", "RIGHT", "SELECT", "SET", "SHOW", "SUM",
    "TABLE", "TABLES", "THEN", "TRUE", "UNION", "USING", "VALUES", "VIEW", "WHEN", "WHERE",
    "WINDOW", "WITH",
];

/// Tab completion for the editor: commands after a leading backslash, file names after `\i`,
/// a command's choices after it, otherwise tables, columns and keywords.
pub struct SqlHelper {
    pub vocabulary: Arc<RwLock<Vec<String>>>,
    pub files: FilenameCompleter,
}

impl SqlHelper {
    fn candidates(&self, line: &str, start: usize, word: &str) -> Vec<String> {
        let lower = word.to_lowercase();
        let matches = |candidate: &str| candidate.to_lowercase().starts_with(&lower);
        let head = line.trim_start();
        if let Some(command) = head.strip_prefix('\\') {
            let before = &line[..start];
            if before.trim_start() == "\\" {
                return COMMANDS
                    .iter()
                    .filter(|c| c.name.starts_with(command.trim_end()))
                    .map(|c| c.name.to_string())
                    .collect();
            }
            let name = command.split_whitespace().next().unwrap_or_default();
            if let Some(c) = COMMANDS.iter().find(|c| c.name == name).filter(|c| !c.choices.is_empty()) {
                return c.choices.iter().filter(|f| matches(f)).map(|f| f.to_string()).collect();
            }
        }
        let vocabulary = self.vocabulary.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = vocabulary.iter().filter(|w| matches(w)).cloned().collect();
        if !head.starts_with('\\') {
            // Keywords follow the case the user types in.
            let upper = word.chars().any(char::is_uppercase);
            out.extend(KEYWORDS.iter().filter(|k| matches(k)).map(|k| {
                if upper {
                    k.to_string()
                } else {
                    k.to_lowercase()
                }
            }));
        }
        out
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        if head.trim_start().starts_with("\\i ") {
            return self.files.complete(line, pos, ctx);
        }
        let start = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '?'))
            .map_or(0, |i| i + head[i..].chars().next().map_or(1, char::len_utf8));
        let word = &head[start..];
        let pairs = self
            .candidates(line, start, word)
            .into_iter()
            .map(|c| Pair { display: c.clone(), replacement: c })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::FileHistory;

    fn helper(words: &[&str]) -> SqlHelper {
        SqlHelper {
            vocabulary: Arc::new(RwLock::new(words.iter().map(|w| w.to_string()).collect())),
            files: FilenameCompleter::new(),
        }
    }

    fn complete(helper: &SqlHelper, line: &str) -> (usize, Vec<String>) {
        let history = FileHistory::new();
        let ctx = rustyline::Context::new(&history);
        let (start, pairs) = helper.complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_names_keywords_and_commands() {
        let h = helper(&["opens", "live.opens", "pid", "path"]);
        assert_eq!(complete(&h, "select * from op"), (14, vec!["opens".into()]));
        assert_eq!(complete(&h, "select * from live.o"), (14, vec!["live.opens".into()]));
        assert_eq!(complete(&h, "sel"), (0, vec!["select".into()]));
        assert_eq!(complete(&h, "SEL"), (0, vec!["SELECT".into()]));
        assert_eq!(complete(&h, "select p"), (7, vec!["pid".into(), "path".into(), "partition".into()]));
        assert_eq!(complete(&h, "\\ti"), (1, vec!["timing".into()]));
        assert_eq!(complete(&h, "\\format nd"), (8, vec!["ndjson".into()]));
        assert_eq!(complete(&h, "\\d op"), (3, vec!["opens".into()]));
    }
}
