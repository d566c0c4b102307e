//! PostgreSQL through sqlx: values bound as the types both databases share, rows read into
//! them by the column's type.

use super::value::Kind;
use super::{DbError, Done, Error, Query, Result, Row, Value, Want};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Column, Postgres, Row as _, TypeInfo, ValueRef};
use std::sync::Arc;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(d) => Error::Database(DbError::new(
                d.code().map(|c| c.into_owned()),
                d.message().to_owned(),
            )),
            sqlx::Error::RowNotFound => Error::RowNotFound,
            e => Error::Io(e.to_string()),
        }
    }
}

fn bind_one(
    q: sqlx::query::Query<'_, Postgres, PgArguments>,
    v: Value,
) -> sqlx::query::Query<'_, Postgres, PgArguments> {
    match v {
        Value::Int(i) => q.bind(i),
        Value::Float(f) => q.bind(f),
        Value::Text(s) => q.bind(s),
        Value::Blob(b) => q.bind(b),
        Value::Bool(b) => q.bind(b),
        Value::Null(Kind::Int) => q.bind(None::<i64>),
        Value::Null(Kind::Float) => q.bind(None::<f64>),
        Value::Null(Kind::Text) => q.bind(None::<String>),
        Value::Null(Kind::Blob) => q.bind(None::<Vec<u8>>),
        Value::Null(Kind::Bool) => q.bind(None::<bool>),
    }
}

/// A column's value by its PostgreSQL type: the integer, float, boolean, text and byte types.
fn read(row: &PgRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i)?;
    let ty = raw.type_info().name().to_owned();
    let null = raw.is_null();
    let value = |kind| -> Result<Value> {
        if null {
            return Ok(Value::Null(kind));
        }
        Ok(match ty.as_str() {
            "INT2" => Value::Int(row.try_get::<i16, _>(i)?.into()),
            "INT4" => Value::Int(row.try_get::<i32, _>(i)?.into()),
            "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
            "FLOAT4" => Value::Float(row.try_get::<f32, _>(i)?.into()),
            "FLOAT8" => Value::Float(row.try_get::<f64, _>(i)?),
            "BOOL" => Value::Bool(row.try_get::<bool, _>(i)?),
            "BYTEA" => Value::Blob(row.try_get::<Vec<u8>, _>(i)?),
            _ => Value::Text(row.try_get::<String, _>(i)?),
        })
    };
    match ty.as_str() {
        "INT2" | "INT4" | "INT8" => value(Kind::Int),
        "FLOAT4" | "FLOAT8" => value(Kind::Float),
        "BOOL" => value(Kind::Bool),
        "BYTEA" => value(Kind::Blob),
        "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" | "CHAR" | "UNKNOWN" => value(Kind::Text),
        other => Err(Error::Decode(format!(
            "column {} has type {other}; cast it to text, bigint, double precision or boolean",
            row.columns()[i].name()
        ))),
    }
}

fn row_of(columns: &mut Option<Arc<[String]>>, r: &PgRow) -> Result<Row> {
    let names = columns
        .get_or_insert_with(|| r.columns().iter().map(|c| c.name().to_owned()).collect())
        .clone();
    let values = (0..r.len())
        .map(|i| read(r, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(Row::new(names, values))
}

pub(super) async fn run<'e, E>(on: E, q: Query<'_>, want: Want) -> Result<(Done, Vec<Row>)>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let query = q.args.into_iter().fold(sqlx::query(q.sql), bind_one);
    let mut columns = None;
    match want {
        Want::Nothing => {
            let done = query.execute(on).await?;
            Ok((
                Done {
                    rows_affected: done.rows_affected(),
                },
                Vec::new(),
            ))
        }
        Want::One => {
            let row = query.fetch_optional(on).await?;
            let rows = row.iter().map(|r| row_of(&mut columns, r));
            Ok((Done { rows_affected: 0 }, rows.collect::<Result<_>>()?))
        }
        Want::All => {
            let mut rows = Vec::new();
            let mut stream = query.fetch(on);
            while let Some(r) = stream.try_next().await? {
                rows.push(row_of(&mut columns, &r)?);
            }
            Ok((Done { rows_affected: 0 }, rows))
        }
    }
}
