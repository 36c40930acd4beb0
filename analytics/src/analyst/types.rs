//! DuckDB result types → PostgreSQL types, and values → wire encodings.
//!
//! Every DuckDB type maps to one PostgreSQL type OID (see the table in the
//! crate README). Values are encoded in the text format PostgreSQL itself
//! produces, or in the binary format when the client asks for it; nested
//! values (LIST, STRUCT, MAP, ARRAY, UNION) are rendered as text in DuckDB's
//! literal syntax, so they can be pasted back into a query.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate};
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::types::Value;
use pgwire::api::Type;

/// Days between 1970-01-01 (DuckDB's epoch) and 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i64 = 10_957;
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// The PostgreSQL type a DuckDB result column is announced as.
pub(crate) fn pg_type(logical: &LogicalTypeHandle) -> Type {
    if logical
        .get_alias()
        .is_some_and(|alias| alias.eq_ignore_ascii_case("json"))
    {
        return Type::JSON;
    }
    match logical.id() {
        LogicalTypeId::Boolean => Type::BOOL,
        LogicalTypeId::Tinyint | LogicalTypeId::Smallint | LogicalTypeId::UTinyint => Type::INT2,
        LogicalTypeId::Integer | LogicalTypeId::USmallint => Type::INT4,
        LogicalTypeId::Bigint | LogicalTypeId::UInteger => Type::INT8,
        LogicalTypeId::Hugeint
        | LogicalTypeId::UBigint
        | LogicalTypeId::UHugeint
        | LogicalTypeId::Decimal => Type::NUMERIC,
        LogicalTypeId::Float => Type::FLOAT4,
        LogicalTypeId::Double => Type::FLOAT8,
        LogicalTypeId::Date => Type::DATE,
        LogicalTypeId::Time => Type::TIME,
        LogicalTypeId::Timestamp
        | LogicalTypeId::TimestampS
        | LogicalTypeId::TimestampMs
        | LogicalTypeId::TimestampNs => Type::TIMESTAMP,
        LogicalTypeId::TimestampTZ => Type::TIMESTAMPTZ,
        LogicalTypeId::Interval => Type::INTERVAL,
        LogicalTypeId::Uuid => Type::UUID,
        LogicalTypeId::Blob => Type::BYTEA,
        _ => Type::TEXT,
    }
}

/// Appends one DataRow field (length prefix and bytes) for `value`.
pub(crate) fn encode_field(buf: &mut BytesMut, value: &Value, ty: &Type, binary: bool) {
    if matches!(value, Value::Null) {
        buf.put_i32(-1);
        return;
    }
    let start = buf.len();
    buf.put_i32(0);
    if !(binary && encode_binary(buf, value, ty)) {
        buf.truncate(start + 4);
        buf.put_slice(render(value, ty).as_bytes());
    }
    let len = (buf.len() - start - 4) as i32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The binary encoding of `value` as `ty`; `false` when the value has no
/// binary form other than its text (text, json, rendered nested values).
fn encode_binary(buf: &mut BytesMut, value: &Value, ty: &Type) -> bool {
    match *ty {
        Type::BOOL => match value {
            Value::Boolean(b) => buf.put_u8(u8::from(*b)),
            _ => return false,
        },
        Type::INT2 => match as_i128(value) {
            Some(v) => buf.put_i16(v as i16),
            None => return false,
        },
        Type::INT4 => match as_i128(value) {
            Some(v) => buf.put_i32(v as i32),
            None => return false,
        },
        Type::INT8 => match as_i128(value) {
            Some(v) => buf.put_i64(v as i64),
            None => return false,
        },
        Type::FLOAT4 => match value {
            Value::Float(f) => buf.put_f32(*f),
            _ => return false,
        },
        Type::FLOAT8 => match value {
            Value::Double(f) => buf.put_f64(*f),
            _ => return false,
        },
        Type::NUMERIC => encode_numeric(buf, &render(value, ty)),
        Type::DATE => match value {
            Value::Date32(days) => buf.put_i32((i64::from(*days) - PG_EPOCH_DAYS) as i32),
            _ => return false,
        },
        Type::TIME => match value {
            Value::Time64(unit, v) => buf.put_i64(unit.to_micros(*v)),
            _ => return false,
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match value {
            Value::Timestamp(unit, v) => buf.put_i64(unit.to_micros(*v) - PG_EPOCH_MICROS),
            _ => return false,
        },
        Type::INTERVAL => match value {
            Value::Interval {
                months,
                days,
                nanos,
            } => {
                buf.put_i64(nanos / 1000);
                buf.put_i32(*days);
                buf.put_i32(*months);
            }
            _ => return false,
        },
        Type::UUID => match value {
            Value::Text(s) => match uuid::Uuid::parse_str(s) {
                Ok(u) => buf.put_slice(u.as_bytes()),
                Err(_) => return false,
            },
            _ => return false,
        },
        Type::BYTEA => match value {
            Value::Blob(b) => buf.put_slice(b),
            _ => return false,
        },
        _ => return false,
    }
    true
}

fn as_i128(value: &Value) -> Option<i128> {
    Some(match value {
        Value::TinyInt(v) => i128::from(*v),
        Value::SmallInt(v) => i128::from(*v),
        Value::Int(v) => i128::from(*v),
        Value::BigInt(v) => i128::from(*v),
        Value::HugeInt(v) => *v,
        Value::UTinyInt(v) => i128::from(*v),
        Value::USmallInt(v) => i128::from(*v),
        Value::UInt(v) => i128::from(*v),
        Value::UBigInt(v) => i128::from(*v),
        _ => return None,
    })
}

/// PostgreSQL's binary `numeric`: base-10000 digits with weight, sign and
/// display scale, from a plain decimal string (`-123.4500`).
fn encode_numeric(buf: &mut BytesMut, decimal: &str) {
    let (negative, digits) = match decimal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, decimal),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let int_part = int_part.trim_start_matches('0');
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let padded: String = "0".repeat(int_pad) + int_part + frac_part + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = padded
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = ((int_part.len() + int_pad) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    buf.put_i16(groups.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_u16(frac_part.len() as u16);
    for g in groups {
        buf.put_i16(g);
    }
}

/// The text PostgreSQL would print for `value` as `ty`.
pub(crate) fn render(value: &Value, ty: &Type) -> String {
    let mut out = String::new();
    render_into(&mut out, value, *ty == Type::TIMESTAMPTZ, false);
    out
}

fn render_into(out: &mut String, value: &Value, with_zone: bool, nested: bool) {
    match value {
        Value::Null => out.push_str(if nested { "NULL" } else { "" }),
        Value::Boolean(b) => out.push_str(match (b, nested) {
            (true, false) => "t",
            (false, false) => "f",
            (true, true) => "true",
            (false, true) => "false",
        }),
        Value::Float(f) => push_float(out, f64::from(*f), f.to_string()),
        Value::Double(f) => push_float(out, *f, f.to_string()),
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Timestamp(unit, v) => push_timestamp(out, unit.to_micros(*v), with_zone),
        Value::Date32(days) => push_date(out, i64::from(*days)),
        Value::Time64(unit, v) => push_time(out, unit.to_micros(*v)),
        Value::Interval {
            months,
            days,
            nanos,
        } => push_interval(out, *months, *days, nanos / 1000),
        Value::Text(s) | Value::Enum(s) if nested => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Value::Text(s) | Value::Enum(s) => out.push_str(s),
        Value::Blob(b) | Value::Geometry(b) => {
            out.push_str("\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
        Value::List(items) | Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(out, item, with_zone, true);
            }
            out.push(']');
        }
        Value::Struct(fields) => {
            out.push('{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "'{}': ", name.replace('\'', "''"));
                render_into(out, item, with_zone, true);
            }
            out.push('}');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(out, key, with_zone, true);
                out.push('=');
                render_into(out, item, with_zone, true);
            }
            out.push('}');
        }
        Value::Union(inner) => render_into(out, inner, with_zone, nested),
        other => match as_i128(other) {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => {
                let _ = write!(out, "{other:?}");
            }
        },
    }
}

fn push_float(out: &mut String, f: f64, shortest: String) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&shortest);
    }
}

fn push_date(out: &mut String, days_since_unix_epoch: i64) {
    let date = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days_since_unix_epoch)));
    match date {
        Some(d) => {
            let _ = write!(out, "{}", d.format("%Y-%m-%d"));
        }
        None => out.push_str(if days_since_unix_epoch > 0 {
            "infinity"
        } else {
            "-infinity"
        }),
    }
}

fn push_time(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    push_fraction(out, frac);
}

fn push_fraction(out: &mut String, micros: i64) {
    if micros != 0 {
        let digits = format!("{micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn push_timestamp(out: &mut String, micros: i64, with_zone: bool) {
    match DateTime::from_timestamp_micros(micros) {
        Some(ts) => {
            let _ = write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S"));
            push_fraction(out, micros.rem_euclid(1_000_000));
            if with_zone {
                out.push_str("+00");
            }
        }
        None => out.push_str(if micros > 0 { "infinity" } else { "-infinity" }),
    }
}

/// PostgreSQL's default `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06`.
fn push_interval(out: &mut String, months: i32, days: i32, micros: i64) {
    let mut parts: Vec<String> = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    for (n, one, many) in [
        (i64::from(years), "year", "years"),
        (i64::from(mons), "mon", "mons"),
        (i64::from(days), "day", "days"),
    ] {
        if n != 0 {
            parts.push(format!("{n} {}", if n.abs() == 1 { one } else { many }));
        }
    }
    if micros != 0 || parts.is_empty() {
        let mut time = String::new();
        if micros < 0 {
            time.push('-');
        }
        push_time(&mut time, micros.abs());
        parts.push(time);
    }
    out.push_str(&parts.join(" "));
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::types::TimeUnit;

    fn numeric(s: &str) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_numeric(&mut buf, s);
        buf.to_vec()
    }

    #[test]
    fn numeric_binary_matches_postgres() {
        // 12345.678 → digits [1, 2345, 6780], weight 1, dscale 3
        assert_eq!(
            numeric("12345.678"),
            vec![0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        assert_eq!(numeric("0"), vec![0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            numeric("-0.01"),
            vec![0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0, 100]
        );
    }

    #[test]
    fn temporal_values_render_like_postgres() {
        let ts = Value::Timestamp(TimeUnit::Microsecond, 1_700_000_000_500_000);
        assert_eq!(render(&ts, &Type::TIMESTAMPTZ), "2023-11-14 22:13:20.5+00");
        assert_eq!(render(&ts, &Type::TIMESTAMP), "2023-11-14 22:13:20.5");
        assert_eq!(render(&Value::Date32(19_000), &Type::DATE), "2022-01-08");
        let iv = Value::Interval {
            months: 14,
            days: 3,
            nanos: 4_000_000_000,
        };
        assert_eq!(
            render(&iv, &Type::INTERVAL),
            "1 year 2 mons 3 days 00:00:04"
        );
    }

    #[test]
    fn nested_values_render_as_duckdb_literals() {
        let list = Value::List(vec![
            Value::Int(1),
            Value::Null,
            Value::Text("it's".to_owned()),
        ]);
        assert_eq!(render(&list, &Type::TEXT), "[1, NULL, 'it''s']");
    }
}
