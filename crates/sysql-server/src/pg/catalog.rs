//! What Postgres clients look for to find their way: `pg_catalog` (from
//! `datafusion-pg-catalog`, over the session's own catalog, so `\dt` and
//! `\d opens` list sysql's tables), `information_schema` (DataFusion's,
//! with Postgres type names, see `statement`), and the settings they read
//! with SHOW and `current_setting()`.

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};
use std::sync::{Arc, OnceLock};
use sysql_engine::query::{ErrorKind, Policy, QueryError, QuerySession};
use sysql_engine::Engine;

/// The Postgres version clients are told (what the catalog follows).
pub const SERVER_VERSION_NUM: &str = "160006";

/// Postgres settings clients read, and their values in sysql.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => "16.6",
        "server_version_num" => SERVER_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" => "on",
        "integer_datetimes" => "on",
        "timezone" | "time zone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "search_path" => "public",
        "transaction_isolation" | "transaction isolation level" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "max_identifier_length" => "63",
        "is_superuser" => "off",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        _ => return None,
    })
}

/// `current_setting(name)`, over [`setting`].
fn current_setting() -> datafusion::logical_expr::ScalarUDF {
    let f = Arc::new(|args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let lookup = |name: Option<&str>| -> datafusion::error::Result<Option<String>> {
            match name {
                None => Ok(None),
                Some(n) => setting(n)
                    .map(|v| Some(v.to_string()))
                    .ok_or_else(|| DataFusionError::Plan(format!("unrecognized configuration parameter \"{n}\""))),
            }
        };
        match &args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(n) | ScalarValue::LargeUtf8(n) | ScalarValue::Utf8View(n)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(n.as_deref())?)))
            }
            ColumnarValue::Array(a) => {
                let names = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                let names = datafusion::common::cast::as_string_array(&names)?;
                let values = names.iter().map(lookup).collect::<datafusion::error::Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
            }
            other => Err(DataFusionError::Plan(format!("current_setting takes a setting's name, not {other:?}"))),
        }
    });
    create_udf("current_setting", vec![DataType::Utf8], DataType::Utf8, Volatility::Stable, f)
}

/// How `information_schema.columns` names an Arrow type in Postgres's words.
fn pg_type_name(arrow: &str) -> &'static str {
    use pgwire_server::api::Type;
    let Ok(dt) = arrow.parse::<DataType>() else { return "text" };
    match super::types::pg_type(&dt) {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::NUMERIC => "numeric",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::BYTEA => "bytea",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        Type::DATE => "date",
        Type::TIME => "time without time zone",
        _ => "text",
    }
}

fn pg_type_name_udf() -> datafusion::logical_expr::ScalarUDF {
    let f = Arc::new(|args: &[ColumnarValue]| -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let names = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let names = datafusion::common::cast::as_string_array(&names)?;
        let out: StringArray = names.iter().map(|n| n.map(pg_type_name)).collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    });
    create_udf("pg_type_name", vec![DataType::Utf8], DataType::Utf8, Volatility::Immutable, f)
}

/// The catalog's static tables (pg_type, pg_proc, ...), read once and
/// shared by every session.
fn static_tables() -> Result<Arc<PgCatalogStaticTables>, QueryError> {
    static TABLES: OnceLock<Result<Arc<PgCatalogStaticTables>, String>> = OnceLock::new();
    TABLES
        .get_or_init(|| PgCatalogStaticTables::try_new().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| QueryError::new(ErrorKind::Execution, format!("cannot load pg_catalog: {e}")))
}

/// A session for a Postgres client: the engine's tables under `policy`,
/// with `pg_catalog` and the functions clients call. (What
/// `datafusion_pg_catalog::setup_pg_catalog` does, with the static tables
/// shared instead of loaded per session.)
pub fn session(engine: &Engine, policy: Policy) -> Result<QuerySession, QueryError> {
    use datafusion_pg_catalog::pg_catalog as pg;
    let session = QuerySession::new(engine, policy)?;
    let ctx = session.context();
    let fail =
        |e: &dyn std::fmt::Display| QueryError::new(ErrorKind::Execution, format!("cannot set up pg_catalog: {e}"));
    let tables = static_tables()?;
    let catalog = ctx.state().config().options().catalog.default_catalog.clone();
    let schema =
        PgCatalogSchemaProvider::try_new(ctx.state().catalog_list().clone(), tables.clone(), EmptyContextProvider)
            .map_err(|e| fail(&e))?;
    ctx.catalog(&catalog)
        .ok_or_else(|| fail(&"no default catalog"))?
        .register_schema("pg_catalog", Arc::new(schema))
        .map_err(|e| fail(&e))?;
    for udf in [
        pg::create_current_database_udf(&catalog),
        pg::create_current_schema_udf(),
        pg::create_current_schemas_udf(),
        pg::create_pg_get_userbyid_udf(),
        pg::has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        pg::has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        pg::create_pg_table_is_visible(),
        pg::format_type::create_format_type_udf(),
        pg::create_session_user_udf(),
        pg::pg_get_expr_udf::create_pg_get_expr_udf(),
        pg::create_pg_get_partkeydef_udf(),
        pg::create_pg_relation_is_publishable_udf(),
        pg::create_pg_get_statisticsobjdef_columns_udf(),
        pg::create_pg_encoding_to_char_udf(),
        pg::create_pg_backend_pid_udf(),
        pg::create_pg_relation_size_udf(),
        pg::create_pg_total_relation_size_udf(),
        pg::create_pg_stat_get_numscans(),
        pg::create_pg_get_constraintdef(),
        pg::create_pg_get_partition_ancestors_udf(),
        pg::quote_ident_udf::create_quote_ident_udf(),
        pg::quote_ident_udf::create_parse_ident_udf(),
        pg::array_bounds_udf::create_array_upper_udf(),
        pg::array_bounds_udf::create_array_lower_udf(),
        current_setting(),
        pg_type_name_udf(),
    ] {
        ctx.register_udf(udf);
    }
    ctx.register_udtf("pg_get_keywords", tables.pg_get_keywords.clone());
    // `regclass` and the other oid types, in casts
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        let planned = datafusion::execution::SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(pg::oid_type_planner::PgOidTypePlanner))
            .build();
        *state.write() = planned;
    }
    pg::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
    Ok(session)
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_names_grafana_knows() {
        use super::pg_type_name;
        assert_eq!(pg_type_name("Timestamp(ns, \"UTC\")"), "timestamp with time zone");
        assert_eq!(pg_type_name("UInt32"), "bigint");
        assert_eq!(pg_type_name("UInt64"), "numeric");
        assert_eq!(pg_type_name("Utf8View"), "text");
        assert_eq!(pg_type_name("Int32"), "integer");
    }
}
