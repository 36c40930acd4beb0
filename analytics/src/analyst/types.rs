//! DuckDB result types → PostgreSQL types, and values → wire encodings.
//!
//! Every DuckDB type maps to one PostgreSQL type OID (see the table in the
//! crate README). Values are encoded in the text format PostgreSQL itself
//! produces, or in the binary format when the client asks for it. A LIST or
//! ARRAY of a scalar type is a one-dimensional PostgreSQL array of that type
//! (`text[]`, `int8[]`, …), which every driver turns into its own list; a
//! STRUCT, a MAP and a list of nested values are `json`.

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
        LogicalTypeId::List | LogicalTypeId::Array => array_of(&pg_type(&logical.child(0))),
        LogicalTypeId::Struct | LogicalTypeId::Map => Type::JSON,
        _ => Type::TEXT,
    }
}

/// PostgreSQL's type modifier of a result column: `((precision << 16) |
/// scale) + 4` for a DECIMAL, as `numeric(p,s)` has it; `-1` otherwise.
pub(crate) fn pg_typmod(logical: &LogicalTypeHandle) -> i32 {
    match logical.id() {
        LogicalTypeId::Decimal => {
            ((i32::from(logical.decimal_width()) << 16) | i32::from(logical.decimal_scale())) + 4
        }
        _ => -1,
    }
}

/// The one-dimensional array type of a scalar element type; nested elements
/// make the whole value `json`.
fn array_of(element: &Type) -> Type {
    match *element {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::TEXT => Type::TEXT_ARRAY,
        _ => Type::JSON,
    }
}

/// The element type of a PostgreSQL array type.
fn element_of(ty: &Type) -> Option<&Type> {
    match ty.kind() {
        tokio_postgres::types::Kind::Array(element) => Some(element),
        _ => None,
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
    if let (Some(element), Value::List(items) | Value::Array(items)) = (element_of(ty), value) {
        return encode_binary_array(buf, items, element);
    }
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

/// PostgreSQL's binary array: dimensions, a null flag, the element type, then
/// each element as a length and its binary encoding (-1 for NULL). An empty
/// array has no dimensions.
fn encode_binary_array(buf: &mut BytesMut, items: &[Value], element: &Type) -> bool {
    let has_null = items.iter().any(|v| matches!(v, Value::Null));
    buf.put_i32(i32::from(!items.is_empty()));
    buf.put_i32(i32::from(has_null));
    buf.put_u32(element.oid());
    if !items.is_empty() {
        buf.put_i32(items.len() as i32);
        buf.put_i32(1);
    }
    for item in items {
        if matches!(item, Value::Null) {
            buf.put_i32(-1);
            continue;
        }
        let start = buf.len();
        buf.put_i32(0);
        if !encode_binary(buf, item, element) {
            // Text and json elements: their binary form is their text.
            if !matches!(*element, Type::TEXT | Type::JSON) {
                return false;
            }
            buf.truncate(start + 4);
            buf.put_slice(render(item, element).as_bytes());
        }
        let len = (buf.len() - start - 4) as i32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    true
}

/// The text PostgreSQL would print for `value` as `ty`.
pub(crate) fn render(value: &Value, ty: &Type) -> String {
    let mut out = String::new();
    match (value, element_of(ty)) {
        (Value::List(items) | Value::Array(items), Some(element)) => {
            render_array(&mut out, items, element)
        }
        (Value::List(_) | Value::Array(_) | Value::Struct(_) | Value::Map(_), None)
            if *ty == Type::JSON =>
        {
            render_json(&mut out, value)
        }
        _ => render_into(&mut out, value, *ty == Type::TIMESTAMPTZ, false),
    }
    out
}

/// A PostgreSQL array literal: `{a,"b c",NULL}`. An element is quoted when it
/// is empty, is `NULL` in any case, or holds a space, a quote, a backslash, a
/// comma or a brace; inside quotes `"` and `\` are escaped with `\`.
fn render_array(out: &mut String, items: &[Value], element: &Type) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if matches!(item, Value::Null) {
            out.push_str("NULL");
            continue;
        }
        let text = render(item, element);
        let quote = text.is_empty()
            || text.eq_ignore_ascii_case("null")
            || text
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | ',' | '{' | '}'));
        if quote {
            out.push('"');
            for c in text.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out.push('}');
}

/// A nested value as JSON: lists as arrays, structs and maps as objects (a
/// map's keys as their text), numbers as numbers, everything else as the
/// string PostgreSQL would print for it.
fn render_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Float(f) if f.is_finite() => push_float(out, f64::from(*f), f.to_string()),
        Value::Double(f) if f.is_finite() => push_float(out, *f, f.to_string()),
        Value::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        Value::List(items) | Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render_json(out, item);
            }
            out.push(']');
        }
        Value::Struct(fields) => {
            out.push('{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(out, name);
                out.push(':');
                render_json(out, item);
            }
            out.push('}');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut name = String::new();
                render_into(&mut name, key, true, false);
                push_json_string(out, &name);
                out.push(':');
                render_json(out, item);
            }
            out.push('}');
        }
        Value::Union(inner) => render_json(out, inner),
        other => match as_i128(other) {
            Some(v) => {
                let _ = write!(out, "{v}");
            }
            None => {
                let mut text = String::new();
                render_into(&mut text, other, true, false);
                push_json_string(out, &text);
            }
        },
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
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
