//! DuckDB result types → PostgreSQL types, and values → wire encodings.
//!
//! Every DuckDB type maps to one PostgreSQL type OID (see the table in the
//! crate README). Values are encoded in the text format PostgreSQL itself
//! produces, or in the binary format when the client asks for it. A LIST or
//! ARRAY of a scalar type is a one-dimensional PostgreSQL array of that type
//! (`text[]`, `int8[]`, …), which every driver turns into its own list; a
//! STRUCT, a MAP and a list of nested values are `json`.

use bytes::{BufMut, BytesMut};
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::types::Value;
use pgwire::api::Type;

mod render;

pub(crate) use render::{push_joined, push_quoted, render};

/// Days between 1970-01-01 (DuckDB's epoch) and 2000-01-01 (PostgreSQL's).
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;
/// [`PG_EPOCH_DAYS`] in microseconds.
pub(crate) const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

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
    // `None` before anything is written when the value has no binary form.
    let mut encode = || -> Option<()> {
        match (ty, value) {
            (&Type::BOOL, Value::Boolean(b)) => buf.put_u8(u8::from(*b)),
            (&Type::INT2, _) => buf.put_i16(as_i128(value)? as i16),
            (&Type::INT4, _) => buf.put_i32(as_i128(value)? as i32),
            (&Type::INT8, _) => buf.put_i64(as_i128(value)? as i64),
            (&Type::FLOAT4, Value::Float(f)) => buf.put_f32(*f),
            (&Type::FLOAT8, Value::Double(f)) => buf.put_f64(*f),
            (&Type::NUMERIC, _) => encode_numeric(buf, &render(value, ty)),
            (&Type::DATE, Value::Date32(days)) => {
                buf.put_i32((i64::from(*days) - i64::from(PG_EPOCH_DAYS)) as i32)
            }
            (&Type::TIME, Value::Time64(unit, v)) => buf.put_i64(unit.to_micros(*v)),
            (&Type::TIMESTAMP | &Type::TIMESTAMPTZ, Value::Timestamp(unit, v)) => {
                buf.put_i64(unit.to_micros(*v) - PG_EPOCH_MICROS)
            }
            (
                &Type::INTERVAL,
                Value::Interval {
                    months,
                    days,
                    nanos,
                },
            ) => {
                buf.put_i64(nanos / 1000);
                buf.put_i32(*days);
                buf.put_i32(*months);
            }
            (&Type::UUID, Value::Text(s)) => {
                buf.put_slice(uuid::Uuid::parse_str(s).ok()?.as_bytes())
            }
            (&Type::BYTEA, Value::Blob(b)) => buf.put_slice(b),
            _ => return None,
        }
        Some(())
    };
    encode().is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
