//! How timestamps show in `table` and expanded output: every value of a column with the same
//! number of fractional digits, so that they line up and compare at a glance, and a zone suffix
//! only when the column's type carries a zone (`Z` for UTC, else the offset, `+02:00`).
//!
//! A complete result takes the fewest digits of seconds, milliseconds, microseconds or
//! nanoseconds that lose nothing of the values shown: a column of whole seconds shows no
//! fraction, one with a single value of odd nanoseconds shows nine digits in every row. A
//! streamed (live) table fixes its column widths before it has seen the values, so there a
//! column shows all the digits of its unit. The date is always shown. The machine formats
//! (CSV, JSON) keep their own full-precision form and do not come here.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};

/// How much of a second's fraction a timestamp shows; ordered from the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Precision {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Precision {
    /// All the digits a value of `unit` can have.
    fn of_unit(unit: TimeUnit) -> Self {
        match unit {
            TimeUnit::Second => Precision::Seconds,
            TimeUnit::Millisecond => Precision::Millis,
            TimeUnit::Microsecond => Precision::Micros,
            TimeUnit::Nanosecond => Precision::Nanos,
        }
    }

    /// The least precision that shows a fraction of `nanos` nanoseconds exactly.
    fn needed(nanos: u32) -> Self {
        match nanos {
            0 => Precision::Seconds,
            n if n % 1_000_000 == 0 => Precision::Millis,
            n if n % 1_000 == 0 => Precision::Micros,
            _ => Precision::Nanos,
        }
    }

    fn seconds_format(self) -> SecondsFormat {
        match self {
            Precision::Seconds => SecondsFormat::Secs,
            Precision::Millis => SecondsFormat::Millis,
            Precision::Micros => SecondsFormat::Micros,
            Precision::Nanos => SecondsFormat::Nanos,
        }
    }

    /// The chrono format of a zone-less timestamp: RFC 3339 without an offset.
    fn naive_format(self) -> &'static str {
        match self {
            Precision::Seconds => "%Y-%m-%dT%H:%M:%S",
            Precision::Millis => "%Y-%m-%dT%H:%M:%S%.3f",
            Precision::Micros => "%Y-%m-%dT%H:%M:%S%.6f",
            Precision::Nanos => "%Y-%m-%dT%H:%M:%S%.9f",
        }
    }
}

/// The batches with each timestamp column as text at the least precision that loses nothing of
/// its values in all of `batches` (the rows shown).
pub(super) fn shortest(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    let Some(first) = batches.first() else { return Vec::new() };
    let precisions: Vec<Option<Precision>> = (0..first.num_columns())
        .map(|i| {
            let DataType::Timestamp(..) = first.schema().field(i).data_type() else { return None };
            let fractions = batches.iter().flat_map(|b| instants(b.column(i)).into_iter().flatten().flatten());
            Some(fractions.map(|(_, nanos)| Precision::needed(nanos)).max().unwrap_or(Precision::Seconds))
        })
        .collect();
    batches.iter().map(|b| as_text(b, &precisions)).collect()
}

/// The batch with each timestamp column as text with all the digits of its unit: a streamed
/// table's widths are fixed before later values are known.
pub(super) fn at_unit(batch: &RecordBatch) -> RecordBatch {
    let precisions: Vec<Option<Precision>> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(unit, _) => Some(Precision::of_unit(*unit)),
            _ => None,
        })
        .collect();
    as_text(batch, &precisions)
}

/// How wide a value of `data_type` shows in a streamed table ([`at_unit`]), for timestamps; 0
/// for other types, whose width the data decides.
pub(super) fn width(data_type: &DataType) -> usize {
    let DataType::Timestamp(unit, zone) = data_type else { return 0 };
    // Any instant of four-digit years is as wide.
    let zone = zone.as_deref().and_then(|z| z.parse::<Tz>().ok());
    text(1_700_000_000, 0, zone.as_ref(), Precision::of_unit(*unit)).map_or(0, |s| s.chars().count())
}

/// `batch` with the columns that have a precision replaced by their text. A column whose zone
/// is unknown or whose values are out of chrono's range stays as it is (Arrow shows it).
fn as_text(batch: &RecordBatch, precisions: &[Option<Precision>]) -> RecordBatch {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::with_capacity(precisions.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(precisions.len());
    for (i, precision) in precisions.iter().enumerate() {
        let field = schema.field(i);
        match precision.and_then(|p| column_text(batch.column(i), p)) {
            Some(column) => {
                fields.push(Field::new(field.name(), DataType::Utf8, true));
                columns.push(column);
            }
            None => {
                fields.push(field.clone());
                columns.push(batch.column(i).clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| batch.clone())
}

/// A timestamp column as text at `precision`, in its zone when it has one.
fn column_text(column: &ArrayRef, precision: Precision) -> Option<ArrayRef> {
    let zone: Option<Tz> = match column.data_type() {
        DataType::Timestamp(_, Some(zone)) => Some(zone.parse().ok()?),
        _ => None,
    };
    let values = instants(column)?
        .into_iter()
        .map(|instant| match instant {
            Some((secs, nanos)) => text(secs, nanos, zone.as_ref(), precision).map(Some),
            None => Some(None),
        })
        .collect::<Option<Vec<Option<String>>>>()?;
    Some(Arc::new(StringArray::from(values)))
}

/// A timestamp column's values as whole seconds since the epoch and nanoseconds of the second
/// (`None` for a NULL); `None` for a column that is no timestamp.
fn instants(column: &ArrayRef) -> Option<Vec<Option<(i64, u32)>>> {
    let DataType::Timestamp(unit, _) = column.data_type() else { return None };
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let ticks = cast(column, &DataType::Int64).ok()?;
    let ticks = ticks.as_primitive::<Int64Type>();
    let nanos_per_tick = 1_000_000_000 / per_second;
    Some(
        (0..ticks.len())
            .map(|row| {
                let v = ticks.value(row);
                let fraction = v.rem_euclid(per_second) * nanos_per_tick;
                (!ticks.is_null(row)).then_some((v.div_euclid(per_second), fraction as u32))
            })
            .collect(),
    )
}

/// One instant as RFC 3339 at `precision`: in `zone` with its offset (`Z` for UTC), or without
/// an offset for a zone-less type. `None` out of chrono's range.
fn text(secs: i64, nanos: u32, zone: Option<&Tz>, precision: Precision) -> Option<String> {
    let utc = DateTime::<Utc>::from_timestamp(secs, nanos)?;
    Some(match zone {
        Some(zone) => utc.with_timezone(zone).to_rfc3339_opts(precision.seconds_format(), true),
        None => utc.naive_utc().format(precision.naive_format()).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

    /// 2026-12-02T10:00:01 UTC.
    const SECOND: i64 = 1_796_205_601;

    fn batch(column: ArrayRef) -> RecordBatch {
        RecordBatch::try_from_iter([("ts", column)]).unwrap()
    }

    fn nanos(values: &[Option<i64>], zone: Option<&str>) -> RecordBatch {
        let array = TimestampNanosecondArray::from(values.to_vec());
        batch(Arc::new(match zone {
            Some(zone) => array.with_timezone(zone),
            None => array,
        }))
    }

    /// The text of every row of the first column, NULL for nulls.
    fn shown(batches: &[RecordBatch]) -> Vec<String> {
        let options = FormatOptions::new().with_null("NULL");
        let mut out = Vec::new();
        for b in batches {
            let f = ArrayFormatter::try_new(b.column(0).as_ref(), &options).unwrap();
            out.extend((0..b.num_rows()).map(|r| f.value(r).to_string()));
        }
        out
    }

    fn at(second: i64, nanos: i64) -> Option<i64> {
        Some((SECOND + second) * 1_000_000_000 + nanos)
    }

    #[test]
    fn whole_seconds_show_no_fraction() {
        let b = nanos(&[at(0, 0), None, at(1, 0)], None);
        assert_eq!(shown(&shortest(&[b])), ["2026-12-02T10:00:01", "NULL", "2026-12-02T10:00:02"]);
    }

    #[test]
    fn milliseconds_show_three_digits_in_every_row() {
        let b = nanos(&[at(0, 123_000_000), at(1, 0)], None);
        assert_eq!(shown(&shortest(&[b])), ["2026-12-02T10:00:01.123", "2026-12-02T10:00:02.000"]);
    }

    #[test]
    fn microseconds_show_six_digits() {
        let b = nanos(&[at(0, 123_456_000), at(0, 100_000_000)], None);
        assert_eq!(shown(&shortest(&[b])), ["2026-12-02T10:00:01.123456", "2026-12-02T10:00:01.100000"]);
    }

    #[test]
    fn one_odd_nanosecond_in_any_batch_shows_nine_digits_everywhere() {
        let whole = nanos(&[at(0, 0)], None);
        let odd = nanos(&[at(0, 123_456_789)], None);
        assert_eq!(shown(&shortest(&[whole, odd])), ["2026-12-02T10:00:01.000000000", "2026-12-02T10:00:01.123456789"]);
    }

    #[test]
    fn a_zone_shows_only_when_the_type_has_one() {
        let utc = nanos(&[at(0, 500_000_000)], Some("UTC"));
        assert_eq!(shown(&shortest(&[utc])), ["2026-12-02T10:00:01.500Z"]);
        let offset = nanos(&[at(0, 0)], Some("+02:00"));
        assert_eq!(shown(&shortest(&[offset])), ["2026-12-02T12:00:01+02:00"]);
        let naive = nanos(&[at(0, 0)], None);
        assert_eq!(shown(&shortest(&[naive])), ["2026-12-02T10:00:01"]);
    }

    #[test]
    fn a_unit_coarser_than_nanoseconds() {
        let millis = batch(Arc::new(TimestampMillisecondArray::from(vec![SECOND * 1000 + 5, SECOND * 1000])));
        assert_eq!(shown(&shortest(&[millis])), ["2026-12-02T10:00:01.005", "2026-12-02T10:00:01.000"]);
        let seconds = batch(Arc::new(TimestampSecondArray::from(vec![SECOND])));
        assert_eq!(shown(&shortest(&[seconds])), ["2026-12-02T10:00:01"]);
    }

    #[test]
    fn before_the_epoch() {
        // Half a second before 1970: the fraction counts forward from the second before.
        let b = nanos(&[Some(-500_000_000)], Some("UTC"));
        assert_eq!(shown(&shortest(&[b])), ["1969-12-31T23:59:59.500Z"]);
    }

    #[test]
    fn streamed_columns_show_every_digit_of_their_unit() {
        let b = nanos(&[at(0, 0)], Some("UTC"));
        assert_eq!(shown(&[at_unit(&b)]), ["2026-12-02T10:00:01.000000000Z"]);
        assert_eq!(width(b.schema().field(0).data_type()), "2026-12-02T10:00:01.000000000Z".len());
        assert_eq!(width(&DataType::Timestamp(TimeUnit::Second, None)), "2026-12-02T10:00:01".len());
        assert_eq!(width(&DataType::Utf8), 0);
    }

    #[test]
    fn other_columns_and_unknown_zones_stay_as_they_are() {
        let b = nanos(&[at(0, 0)], Some("Not/AZone"));
        assert_eq!(shortest(std::slice::from_ref(&b))[0], b);
        let n = batch(Arc::new(datafusion::arrow::array::Int64Array::from(vec![1])));
        assert_eq!(shortest(std::slice::from_ref(&n))[0], n);
    }
}
