//! `LIKE` patterns made only of literal segments and `%`, such as
//! `'%.missing/%7'` or `'/home/%/.ssh/%'`, matched segment by segment: the
//! first segment as a prefix, the last as a suffix, the ones between found in
//! order with a substring searcher. Arrow's kernel runs these as regular
//! expressions (it has fast paths only for `abc%`, `%abc` and `%abc%`); this
//! is the way DuckDB matches them, about twice as fast here.
//!
//! The optimizer rule rewrites such a `LIKE` in a WHERE clause (a filter,
//! where the expression's name does not matter) into `sysql_like(expr,
//! pattern)`, so EXPLAIN shows it. Patterns with `_`, an escape character, a
//! backslash, or `ILIKE` are left to DataFusion.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, Filter, Like, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use memchr::memmem::Finder;
use std::sync::Arc;

/// A `%`-only pattern, split at its `%`s.
#[derive(Debug)]
pub struct Segments {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    middle: Vec<Finder<'static>>,
}

impl Segments {
    /// The segments of `pattern`, if it has at least one `%` and no `_` or
    /// backslash (so every other character stands for itself).
    pub fn parse(pattern: &str) -> Option<Segments> {
        if !pattern.contains('%') || pattern.contains(['_', '\\']) {
            return None;
        }
        let parts: Vec<&str> = pattern.split('%').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        let middle = parts[1..parts.len() - 1]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| Finder::new(p.as_bytes()).into_owned())
            .collect();
        Some(Segments { prefix: first.as_bytes().to_vec(), suffix: last.as_bytes().to_vec(), middle })
    }

    /// Whether Arrow's own kernel has a fast path for this pattern (a prefix,
    /// a suffix or one substring), so there is nothing to gain.
    fn arrow_has_fast_path(pattern: &str) -> bool {
        let percents = pattern.matches('%').count();
        (percents == 1 && (pattern.ends_with('%') || pattern.starts_with('%')))
            || (percents == 2 && pattern.len() >= 2 && pattern.starts_with('%') && pattern.ends_with('%'))
    }

    pub fn matches(&self, s: &[u8]) -> bool {
        // Empty segments are not compared at all: comparing with an empty
        // Vec's dangling pointer cost 110 ns a row here (the C library's
        // vector memcmp takes a slow path on it), ten times the whole match.
        if s.len() < self.prefix.len() + self.suffix.len()
            || (!self.prefix.is_empty() && !s.starts_with(&self.prefix))
            || (!self.suffix.is_empty() && !s.ends_with(&self.suffix))
        {
            return false;
        }
        let mut rest = &s[self.prefix.len()..s.len() - self.suffix.len()];
        for finder in &self.middle {
            match finder.find(rest) {
                Some(at) => rest = &rest[at + finder.needle().len()..],
                None => return false,
            }
        }
        true
    }
}

/// `sysql_like(text, pattern)`: `text LIKE pattern` for `%`-only patterns.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SegmentLike {
    signature: Signature,
}

impl SegmentLike {
    pub fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::from(SegmentLike { signature: Signature::any(2, Volatility::Immutable) }))
    }
}

impl ScalarUDFImpl for SegmentLike {
    fn name(&self) -> &str {
        "sysql_like"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, pattern] = args.args.as_slice() else {
            return exec_err!("sysql_like takes a text and a pattern");
        };
        let segments = match pattern {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) | ScalarValue::LargeUtf8(Some(p)),
            ) => Segments::parse(p),
            _ => None,
        };
        let Some(segments) = segments else {
            return exec_err!("sysql_like needs a literal pattern of text and %");
        };
        let scalar = matches!(text, ColumnarValue::Scalar(_));
        let array = text.to_array(if scalar { 1 } else { args.number_rows })?;
        let m = |v: Option<&str>| v.map(|s| segments.matches(s.as_bytes()));
        let out: BooleanArray = match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().iter().map(m).collect(),
            DataType::LargeUtf8 => array.as_string::<i64>().iter().map(m).collect(),
            DataType::Utf8View => array.as_string_view().iter().map(m).collect(),
            DataType::Null => BooleanArray::new_null(array.len()),
            other => return exec_err!("sysql_like: {other} is not text"),
        };
        let out: ArrayRef = Arc::new(out);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Rewrites `%`-only `LIKE`s in filters into [`SegmentLike`] calls.
#[derive(Debug)]
pub struct SegmentLikeRule {
    udf: Arc<ScalarUDF>,
}

impl SegmentLikeRule {
    pub fn new(udf: Arc<ScalarUDF>) -> Self {
        SegmentLikeRule { udf }
    }

    fn rewrite_expr(&self, e: Expr) -> Result<Transformed<Expr>> {
        e.transform_up(|e| {
            let Expr::Like(Like { negated, expr, pattern, escape_char: None, case_insensitive: false }) = &e else {
                return Ok(Transformed::no(e));
            };
            let Expr::Literal(
                ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) | ScalarValue::LargeUtf8(Some(p)),
                _,
            ) = pattern.as_ref()
            else {
                return Ok(Transformed::no(e));
            };
            if Segments::parse(p).is_none() || Segments::arrow_has_fast_path(p) {
                return Ok(Transformed::no(e));
            }
            let call = Expr::ScalarFunction(ScalarFunction::new_udf(
                self.udf.clone(),
                vec![expr.as_ref().clone(), Expr::Literal(ScalarValue::Utf8(Some(p.clone())), None)],
            ));
            Ok(Transformed::yes(if *negated { Expr::Not(Box::new(call)) } else { call }))
        })
    }
}

impl OptimizerRule for SegmentLikeRule {
    fn name(&self) -> &str {
        "sysql_segment_like"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = plan else {
            return Ok(Transformed::no(plan));
        };
        let predicate = self.rewrite_expr(filter.predicate.clone())?;
        if !predicate.transformed {
            return Ok(Transformed::no(LogicalPlan::Filter(filter)));
        }
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(predicate.data, filter.input)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::compute::kernels::comparison::like;

    /// Every pattern over a small alphabet gives what Arrow's LIKE gives.
    #[test]
    fn segments_agree_with_arrow_like() {
        let alphabet = ["a", "b", "ab", "%", "/"];
        let mut patterns = vec![String::new()];
        for _ in 0..4 {
            let next: Vec<String> =
                patterns.iter().flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}"))).collect();
            patterns.extend(next);
        }
        patterns.sort();
        patterns.dedup();
        let texts: Vec<String> = {
            let mut t = vec![String::new()];
            for _ in 0..5 {
                let next: Vec<String> =
                    t.iter().flat_map(|s| ["a", "b", "/"].iter().map(move |c| format!("{s}{c}"))).collect();
                t.extend(next);
            }
            t.sort();
            t.dedup();
            t
        };
        let haystack = StringArray::from(texts.clone());
        let mut checked = 0;
        for p in patterns.iter().filter(|p| p.contains('%')) {
            let segments = Segments::parse(p).expect("a %-only pattern");
            let expected = like(&haystack, &StringArray::new_scalar(p.as_str())).unwrap();
            for (i, t) in texts.iter().enumerate() {
                assert_eq!(segments.matches(t.as_bytes()), expected.value(i), "{t:?} LIKE {p:?}");
                checked += 1;
            }
        }
        assert!(checked > 100_000, "{checked}");
        assert!(Segments::parse("a_b%").is_none());
        assert!(Segments::parse("a\\%b%").is_none());
        assert!(Segments::parse("abc").is_none());
        assert!(Segments::arrow_has_fast_path("abc%") && Segments::arrow_has_fast_path("%abc"));
        assert!(Segments::arrow_has_fast_path("%abc%") && !Segments::arrow_has_fast_path("%a%b"));
        assert!(!Segments::arrow_has_fast_path("a%b"));
    }
}
