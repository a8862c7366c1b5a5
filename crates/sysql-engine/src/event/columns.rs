//! A table is one list: [`columns!`] takes each column's name, kind,
//! nullability and doc line once, and makes from it the table's Arrow schema
//! (the doc line rides along as field metadata, for `\d+` and the Postgres
//! catalog), a struct of column builders that finishes into a batch in schema
//! order, and the [`ColumnDef`] list the docs test checks `docs/tables/` against.
//!
//! The code that fills a table (its `append`) stays next to the list; a
//! column added to the list and not appended to is caught by the table's
//! unit test, which builds a batch (Arrow checks every column's length).

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, StringViewBuilder, TimestampNanosecondBuilder,
    UInt16Builder, UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;

/// Field metadata key of a column's doc line.
pub const DESCRIPTION: &str = "description";

/// The Arrow types sysql's tables use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Timestamp(ns, UTC)`.
    Ts,
    Utf8,
    /// Short strings (names), stored inline in 16-byte views.
    Utf8View,
    Int32,
    Int64,
    UInt16,
    UInt32,
    UInt64,
    Boolean,
}

impl Kind {
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Ts => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Kind::Utf8 => DataType::Utf8,
            Kind::Utf8View => DataType::Utf8View,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::UInt16 => DataType::UInt16,
            Kind::UInt32 => DataType::UInt32,
            Kind::UInt64 => DataType::UInt64,
            Kind::Boolean => DataType::Boolean,
        }
    }
}

/// One column as the list gives it.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    /// One line, Markdown (as in the docs' meaning column).
    pub doc: &'static str,
}

impl ColumnDef {
    /// The Arrow field, with the doc line as its `description` metadata.
    pub fn field(&self) -> Field {
        Field::new(self.name, self.kind.data_type(), self.nullable)
            .with_metadata(HashMap::from([(DESCRIPTION.to_string(), self.doc.to_string())]))
    }
}

/// A column kind's builder: made with room for `rows`, finished into an
/// array while a new builder sized for as many rows takes its place (a
/// finished Arrow builder starts again from no capacity, and growing by
/// doubling on every batch copied each column several times).
pub trait Column {
    type Builder;
    const KIND: Kind;
    fn builder(rows: usize) -> Self::Builder;
    fn finish(b: &mut Self::Builder, rows: usize) -> ArrayRef;
}

/// Marker types naming the kinds in [`columns!`] lists.
pub mod kinds {
    use super::*;

    macro_rules! primitive {
        ($($name:ident => $builder:ty),* $(,)?) => {$(
            pub struct $name;
            impl Column for $name {
                type Builder = $builder;
                const KIND: Kind = Kind::$name;
                fn builder(rows: usize) -> $builder {
                    <$builder>::with_capacity(rows)
                }
                fn finish(b: &mut $builder, rows: usize) -> ArrayRef {
                    Arc::new(std::mem::replace(b, <$builder>::with_capacity(rows)).finish())
                }
            }
        )*};
    }
    primitive!(Int32 => Int32Builder, Int64 => Int64Builder, UInt16 => UInt16Builder, UInt32 => UInt32Builder,
        UInt64 => UInt64Builder, Boolean => BooleanBuilder, Utf8View => StringViewBuilder);

    pub struct Ts;
    impl Column for Ts {
        type Builder = TimestampNanosecondBuilder;
        const KIND: Kind = Kind::Ts;
        fn builder(rows: usize) -> Self::Builder {
            TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC")
        }
        fn finish(b: &mut Self::Builder, rows: usize) -> ArrayRef {
            Arc::new(std::mem::replace(b, Self::builder(rows)).finish())
        }
    }

    pub struct Utf8;
    impl Column for Utf8 {
        type Builder = StringBuilder;
        const KIND: Kind = Kind::Utf8;
        fn builder(rows: usize) -> Self::Builder {
            StringBuilder::with_capacity(rows, rows * 16)
        }
        /// The next batch gets room for as many value bytes as this one had,
        /// and an eighth more (a batch past its capacity doubles it).
        fn finish(b: &mut Self::Builder, rows: usize) -> ArrayRef {
            let bytes = b.values_slice().len();
            let bytes = bytes + bytes / 8;
            Arc::new(std::mem::replace(b, StringBuilder::with_capacity(rows, bytes)).finish())
        }
    }
}

/// Declares a table's columns once. For
///
/// ```ignore
/// columns! {
///     /// The `opens` columns after the common ones.
///     pub struct OpensColumns {
///         syscall: Utf8View, not null, "`open`, `openat`, `openat2` or `creat`";
///         path: Utf8, null, "the path as passed";
///         qtype as "type": Utf8, not null, "a column whose SQL name is a Rust keyword";
///     }
/// }
/// ```
///
/// it makes `OpensColumns` with a public builder field per column, and
/// `OpensColumns::{COLUMNS, new, finish}`: the list, builders sized for some
/// rows, and the finished arrays in list order.
#[macro_export]
macro_rules! columns {
    (@nullable null) => { true };
    (@nullable not null) => { false };
    (@name $col:ident) => { stringify!($col) };
    (@name $col:ident $sql:literal) => { $sql };
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($col:ident $(as $sql:literal)?: $kind:ident, $($nullability:ident)+, $doc:literal;)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(pub $col: <$crate::event::columns::kinds::$kind as $crate::event::columns::Column>::Builder,)*
        }

        impl $name {
            /// The columns, in schema order.
            pub const COLUMNS: &'static [$crate::event::columns::ColumnDef] = &[$(
                $crate::event::columns::ColumnDef {
                    name: $crate::columns!(@name $col $($sql)?),
                    kind: <$crate::event::columns::kinds::$kind as $crate::event::columns::Column>::KIND,
                    nullable: $crate::columns!(@nullable $($nullability)+),
                    doc: $doc,
                },
            )*];

            /// Builders with room for `rows` rows.
            pub fn new(rows: usize) -> Self {
                $name {
                    $($col: <$crate::event::columns::kinds::$kind as $crate::event::columns::Column>::builder(rows),)*
                }
            }

            /// The arrays in schema order; the builders start again, sized for
            /// as many rows.
            pub fn finish(&mut self, rows: usize) -> Vec<datafusion::arrow::array::ArrayRef> {
                vec![$(
                    <$crate::event::columns::kinds::$kind as $crate::event::columns::Column>::finish(
                        &mut self.$col,
                        rows,
                    ),
                )*]
            }
        }
    };
}
