//! Arrow columns as Postgres values. Each Arrow type maps to one Postgres
//! type, chosen so that clients read what they expect: `ts` (a timestamp
//! with a zone) is `timestamptz` (microseconds on the wire, as Postgres has
//! it), counts are `int8`, `UInt64` is `numeric` (no Postgres integer holds
//! it), text is `text`. What has no Postgres counterpart goes out as text,
//! as Arrow displays it. Parameters come back the other way.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, StringArray, StringViewArray, Time64MicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormat};
use datafusion::common::ScalarValue;
use pgwire_server::api::portal::Format;
use pgwire_server::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire_server::api::Type;
use pgwire_server::error::{PgWireError, PgWireResult};
use pgwire_server::messages::data::DataRow;
use pgwire_server::types::format::FormatOptions;
use pgwire_server::types::FromSqlText;
use postgres_types::FromSql;
use rust_decimal::Decimal;
use std::collections::VecDeque;
use std::sync::Arc;

/// The Postgres type a column of `dt` is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::TEXT,
        DataType::Dictionary(_, value) => pg_type(value),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Decimal32(p, _) | DataType::Decimal64(p, _) | DataType::Decimal128(p, _) if *p <= 28 => Type::NUMERIC,
        _ => Type::TEXT,
    }
}

/// The Arrow type a parameter of Postgres type `t` becomes, when the
/// statement does not fix it.
fn arrow_type(t: &Type) -> DataType {
    match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::DATE => DataType::Date32,
        Type::BYTEA => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// The fields of a result, each in the format the client asked for.
pub fn fields(schema: &Schema, format: Option<&Format>) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = format.map_or(FieldFormat::Text, |f| f.format_for(i));
            FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format)
        })
        .collect()
}

/// A batch's column, made ready to encode row by row.
enum Column {
    Null,
    Bool(BooleanArray),
    I16(Int16Array),
    I32(Int32Array),
    I64(Int64Array),
    U64(UInt64Array),
    F32(Float32Array),
    F64(Float64Array),
    Text(StringArray),
    TextView(StringViewArray),
    Bytes(BinaryArray),
    /// Raw values and their unit, with a zone (UTC instants) or without.
    Time(Int64Array, TimeUnit, bool),
    Date(Date32Array),
    TimeOfDay(Time64MicrosecondArray),
    Decimal(Decimal128Array, u32),
}

fn arrow_err(e: impl std::fmt::Display) -> PgWireError {
    PgWireError::ApiError(format!("cannot encode a value: {e}").into())
}

fn to(array: &ArrayRef, dt: &DataType) -> PgWireResult<ArrayRef> {
    cast(array, dt).map_err(arrow_err)
}

impl Column {
    fn new(array: &ArrayRef) -> PgWireResult<Column> {
        Ok(match array.data_type() {
            DataType::Null => Column::Null,
            DataType::Boolean => Column::Bool(array.as_boolean().clone()),
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => {
                Column::I16(to(array, &DataType::Int16)?.as_primitive().clone())
            }
            DataType::Int32 | DataType::UInt16 => Column::I32(to(array, &DataType::Int32)?.as_primitive().clone()),
            DataType::Int64 | DataType::UInt32 => Column::I64(to(array, &DataType::Int64)?.as_primitive().clone()),
            DataType::UInt64 => Column::U64(array.as_primitive().clone()),
            DataType::Float16 | DataType::Float32 => Column::F32(to(array, &DataType::Float32)?.as_primitive().clone()),
            DataType::Float64 => Column::F64(array.as_primitive().clone()),
            DataType::Utf8View => Column::TextView(array.as_string_view().clone()),
            DataType::Utf8 => Column::Text(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => Column::Text(to(array, &DataType::Utf8)?.as_string::<i32>().clone()),
            DataType::Dictionary(_, value) if pg_type(value) == Type::TEXT => {
                Column::Text(to(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                Column::Bytes(to(array, &DataType::Binary)?.as_binary::<i32>().clone())
            }
            DataType::Timestamp(unit, zone) => {
                Column::Time(to(array, &DataType::Int64)?.as_primitive::<Int64Type>().clone(), *unit, zone.is_some())
            }
            DataType::Date32 | DataType::Date64 => Column::Date(to(array, &DataType::Date32)?.as_primitive().clone()),
            DataType::Time32(_) | DataType::Time64(_) => {
                Column::TimeOfDay(to(array, &DataType::Time64(TimeUnit::Microsecond))?.as_primitive().clone())
            }
            DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s) if *p <= 28 => {
                let scale = u32::try_from(*s).map_err(arrow_err)?;
                Column::Decimal(to(array, &DataType::Decimal128(*p, *s))?.as_primitive().clone(), scale)
            }
            _ => {
                // As Arrow shows it (lists, structs, intervals, durations).
                let options = ArrowFormat::default().with_null("");
                let formatter = ArrayFormatter::try_new(array.as_ref(), &options).map_err(arrow_err)?;
                let text: StringArray =
                    (0..array.len()).map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string())).collect();
                Column::Text(text)
            }
        })
    }

    fn encode(&self, row: usize, out: &mut DataRowEncoder) -> PgWireResult<()> {
        macro_rules! put {
            ($array:expr, $value:expr) => {{
                if $array.is_null(row) {
                    out.encode_field(&None::<i16>)
                } else {
                    out.encode_field(&$value)
                }
            }};
        }
        match self {
            Column::Null => out.encode_field(&None::<i16>),
            Column::Bool(a) => put!(a, a.value(row)),
            Column::I16(a) => put!(a, a.value(row)),
            Column::I32(a) => put!(a, a.value(row)),
            Column::I64(a) => put!(a, a.value(row)),
            Column::U64(a) => put!(a, Decimal::from(a.value(row))),
            Column::F32(a) => put!(a, a.value(row)),
            Column::F64(a) => put!(a, a.value(row)),
            Column::Text(a) => put!(a, a.value(row)),
            Column::TextView(a) => put!(a, a.value(row)),
            Column::Bytes(a) => put!(a, a.value(row)),
            Column::Time(a, unit, zoned) => {
                if a.is_null(row) {
                    return out.encode_field(&None::<i16>);
                }
                let t = instant(a.value(row), *unit).ok_or_else(|| arrow_err("a time out of range"))?;
                if *zoned {
                    out.encode_field(&t)
                } else {
                    out.encode_field(&t.naive_utc())
                }
            }
            Column::Date(a) => put!(
                a,
                NaiveDate::from_num_days_from_ce_opt(a.value(row) + 719_163)
                    .ok_or_else(|| arrow_err("a date out of range"))?
            ),
            Column::TimeOfDay(a) => {
                if a.is_null(row) {
                    return out.encode_field(&None::<i16>);
                }
                let us = a.value(row);
                let t = NaiveTime::from_num_seconds_from_midnight_opt(
                    (us / 1_000_000) as u32,
                    ((us % 1_000_000) * 1000) as u32,
                )
                .ok_or_else(|| arrow_err("a time of day out of range"))?;
                out.encode_field(&t)
            }
            Column::Decimal(a, scale) => {
                if a.is_null(row) {
                    return out.encode_field(&None::<i16>);
                }
                let d = Decimal::try_from_i128_with_scale(a.value(row), *scale).map_err(arrow_err)?;
                out.encode_field(&d)
            }
        }
    }
}

/// A UTC instant from a raw timestamp value.
fn instant(v: i64, unit: TimeUnit) -> Option<DateTime<Utc>> {
    match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    }
}

/// Appends the rows of `batch` to `out`, as Postgres data rows of `fields`.
pub fn encode(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>, out: &mut VecDeque<DataRow>) -> PgWireResult<()> {
    let columns = batch.columns().iter().map(Column::new).collect::<PgWireResult<Vec<_>>>()?;
    let mut encoder = DataRowEncoder::new(fields.clone());
    for row in 0..batch.num_rows() {
        for c in &columns {
            c.encode(row, &mut encoder)?;
        }
        out.push_back(encoder.take_row());
    }
    Ok(())
}

/// The value of parameter `bytes` of Postgres type `t` sent in `binary` or
/// text, as `want` (the type the statement gives it) when known.
pub fn parameter(bytes: Option<&Bytes>, t: &Type, binary: bool, want: Option<&DataType>) -> PgWireResult<ScalarValue> {
    let target = want.cloned().unwrap_or_else(|| arrow_type(t));
    let Some(bytes) = bytes else {
        return ScalarValue::try_from(&target).map_err(arrow_err);
    };
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| PgWireError::FailedToParseParameter(e);
    fn read<'a, T: FromSql<'a> + FromSqlText<'a>>(
        bytes: &'a [u8],
        t: &Type,
        binary: bool,
    ) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
        if binary {
            T::from_sql(t, bytes)
        } else {
            T::from_sql_text(t, bytes, &FormatOptions::default())
        }
    }
    let value = match *t {
        Type::BOOL => ScalarValue::Boolean(Some(read::<bool>(bytes, t, binary).map_err(bad)?)),
        Type::INT2 => ScalarValue::Int16(Some(read::<i16>(bytes, t, binary).map_err(bad)?)),
        Type::INT4 => ScalarValue::Int32(Some(read::<i32>(bytes, t, binary).map_err(bad)?)),
        Type::INT8 => ScalarValue::Int64(Some(read::<i64>(bytes, t, binary).map_err(bad)?)),
        Type::OID => ScalarValue::Int64(Some(i64::from(read::<u32>(bytes, t, binary).map_err(bad)?))),
        Type::FLOAT4 => ScalarValue::Float32(Some(read::<f32>(bytes, t, binary).map_err(bad)?)),
        Type::FLOAT8 => ScalarValue::Float64(Some(read::<f64>(bytes, t, binary).map_err(bad)?)),
        Type::NUMERIC => {
            let d = read::<Decimal>(bytes, t, binary).map_err(bad)?;
            ScalarValue::Utf8(Some(d.to_string()))
        }
        Type::TIMESTAMPTZ => {
            let v = read::<DateTime<FixedOffset>>(bytes, t, binary).map_err(bad)?;
            ScalarValue::TimestampMicrosecond(Some(v.timestamp_micros()), Some("UTC".into()))
        }
        Type::TIMESTAMP => {
            let v = read::<NaiveDateTime>(bytes, t, binary).map_err(bad)?;
            ScalarValue::TimestampMicrosecond(Some(v.and_utc().timestamp_micros()), None)
        }
        Type::DATE => {
            let v = read::<NaiveDate>(bytes, t, binary).map_err(bad)?;
            ScalarValue::Date32(Some(chrono::Datelike::num_days_from_ce(&v) - 719_163))
        }
        Type::BYTEA if binary => ScalarValue::Binary(Some(bytes.to_vec())),
        _ if binary && *t != Type::TEXT && *t != Type::VARCHAR && *t != Type::UNKNOWN && *t != Type::BPCHAR => {
            return Err(PgWireError::ApiError(format!("parameters of type {t} are not accepted in binary").into()))
        }
        _ => ScalarValue::Utf8(Some(String::from_utf8(bytes.to_vec()).map_err(|e| bad(Box::new(e)))?)),
    };
    if value.data_type() == target {
        return Ok(value);
    }
    value.cast_to(&target).map_err(|e| {
        PgWireError::ApiError(
            format!("parameter {value} cannot be read as {target}: {}", super::one_line(&e.to_string())).into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{TimestampNanosecondArray, UInt64Array};
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn types_clients_expect() {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        assert_eq!(pg_type(&ts), Type::TIMESTAMPTZ);
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::UInt64), Type::NUMERIC);
        assert_eq!(pg_type(&DataType::Utf8View), Type::TEXT);
    }

    #[test]
    fn text_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true),
            Field::new("n", DataType::UInt64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_700_000_000_123_456_789), None]).with_timezone("UTC"),
                ),
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(7)])),
            ],
        )
        .unwrap();
        let fields = Arc::new(fields(&schema, None));
        let mut rows = VecDeque::new();
        encode(&batch, &fields, &mut rows).unwrap();
        assert_eq!(rows.len(), 2);
        let first = format!("{:?}", rows[0]);
        assert!(first.contains("2023-11-14 22:13:20.123456+00"), "{first}");
        assert!(first.contains("18446744073709551615"), "{first}");
    }

    #[test]
    fn parameters() {
        let p = parameter(Some(&Bytes::from_static(b"cat")), &Type::UNKNOWN, false, Some(&DataType::Utf8View)).unwrap();
        assert_eq!(p, ScalarValue::Utf8View(Some("cat".into())));
        let p = parameter(Some(&Bytes::from(42i64.to_be_bytes().to_vec())), &Type::INT8, true, None).unwrap();
        assert_eq!(p, ScalarValue::Int64(Some(42)));
        let p = parameter(None, &Type::INT4, false, None).unwrap();
        assert_eq!(p, ScalarValue::Int32(None));
    }
}
