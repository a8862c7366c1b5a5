//! Redaction of secrets in `execs.argv`: command lines carry passwords and
//! tokens (`--password=hunter2`, `curl -H 'Authorization: Bearer ...'`), and
//! sysql sees every user's. Patterns run over the argv text as the table
//! shows it (arguments joined by single spaces), before it is stored; what a
//! pattern's first capture group matched (or the whole match, if it has no
//! group) becomes `***`.

use regex::{Captures, Regex, RegexSet};
use std::borrow::Cow;

/// What a redacted value reads as.
pub const MASK: &str = "***";

/// Patterns on by default: values of options whose name ends in password,
/// passwd, token, secret or api-key (`--password=x`, `--db-password x`,
/// `-token=x`), HTTP Authorization headers, and passwords in URLs
/// (`https://user:pw@host`). A value runs to the next space.
pub const DEFAULT_PATTERNS: &[&str] = &[
    r"(?i)(?:^|\s)--?(?:[a-z0-9]+[-_.])*(?:password|passwd|token|secret|api[-_]?key)(?:=|\s+)(\S+)",
    r"(?i)\bauthorization:\s*(?:(?:bearer|basic|token)\s+)?(\S+)",
    r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@]*:([^\s/@]+)@",
];

/// The patterns applied to each exec's argv.
#[derive(Debug, Clone, Default)]
pub struct ArgvRedaction {
    patterns: Vec<Regex>,
    /// All the patterns in one automaton: most argvs match none, and one
    /// scan says so (running each pattern's search cost half the execs
    /// writer's time).
    any: RegexSet,
}

impl ArgvRedaction {
    /// Redacts nothing (`--no-redact-argv`).
    pub fn none() -> Self {
        ArgvRedaction::default()
    }

    /// The default patterns.
    pub fn defaults() -> Self {
        let patterns = DEFAULT_PATTERNS.iter().map(|p| Regex::new(p).expect("default patterns compile")).collect();
        ArgvRedaction::from_patterns(patterns)
    }

    fn from_patterns(patterns: Vec<Regex>) -> Self {
        let any = RegexSet::new(patterns.iter().map(|r| r.as_str())).expect("each pattern compiled alone");
        ArgvRedaction { patterns, any }
    }

    /// The default patterns (if `defaults`) and `extra`. The error is one
    /// line: which pattern, and why it is not a regular expression.
    pub fn new(extra: &[String], defaults: bool) -> Result<Self, String> {
        let mut redaction = if defaults { Self::defaults() } else { Self::none() };
        for p in extra {
            let re = Regex::new(p).map_err(|e| {
                let why = e.to_string();
                let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
                format!("invalid --redact-argv pattern '{p}': {}", why.trim_start_matches("error: "))
            })?;
            redaction.patterns.push(re);
        }
        Ok(ArgvRedaction::from_patterns(redaction.patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `argv` with every match masked; borrowed (no allocation) when nothing
    /// matches.
    pub fn apply<'a>(&self, argv: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(argv);
        if !self.any.is_match(argv) {
            return out;
        }
        for re in &self.patterns {
            if let Cow::Owned(s) = re.replace_all(&out, mask) {
                out = Cow::Owned(s);
            }
        }
        out
    }
}

/// The whole match with its first group (or all of it) masked.
fn mask(caps: &Captures<'_>) -> String {
    let whole = caps.get(0).expect("group 0 is the match");
    match caps.get(1) {
        Some(g) => {
            let text = whole.as_str();
            let (from, to) = (g.start() - whole.start(), g.end() - whole.start());
            format!("{}{MASK}{}", &text[..from], &text[to..])
        }
        None => MASK.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns() {
        let r = ArgvRedaction::defaults();
        for (argv, want) in [
            ("mysql --password=hunter2 db", "mysql --password=*** db"),
            ("app --db-password hunter2 --verbose", "app --db-password *** --verbose"),
            (
                "app --token=abc --api-key=k1 --api_key=k2 -secret=s",
                "app --token=*** --api-key=*** --api_key=*** -secret=***",
            ),
            ("app --AUTH_TOKEN=Xy", "app --AUTH_TOKEN=***"),
            ("curl -H Authorization: Bearer abc.def https://x", "curl -H Authorization: Bearer *** https://x"),
            ("git clone https://me:ghp_123@github.com/a/b", "git clone https://me:***@github.com/a/b"),
            ("ls -l /tmp", "ls -l /tmp"),
            ("app --token-file=/etc/t --password-stdin", "app --token-file=/etc/t --password-stdin"),
            ("echo password=x", "echo password=x"),
        ] {
            assert_eq!(r.apply(argv), want, "{argv}");
        }
        assert!(matches!(r.apply("ls -l /tmp"), Cow::Borrowed(_)));
    }

    #[test]
    fn user_patterns_mask_their_first_group_or_whole_match() {
        let r = ArgvRedaction::new(&["-p(\\S+)".into(), "sk_live_[0-9a-z]+".into()], false).unwrap();
        assert_eq!(r.apply("mysql -phunter2 -u root"), "mysql -p*** -u root");
        assert_eq!(r.apply("pay --key sk_live_abc123 now"), "pay --key *** now");
        assert_eq!(r.apply("x --token=y"), "x --token=y", "defaults off");
        assert!(ArgvRedaction::none().is_empty());
        let both = ArgvRedaction::new(&["PIN=(\\d+)".into()], true).unwrap();
        assert_eq!(both.apply("a PIN=1234 --token=t"), "a PIN=*** --token=***");
    }

    #[test]
    fn a_bad_pattern_is_a_one_line_error() {
        let err = ArgvRedaction::new(&["(unclosed".into()], true).unwrap_err();
        assert_eq!(err, "invalid --redact-argv pattern '(unclosed': unclosed group");
    }
}
