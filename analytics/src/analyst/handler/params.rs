//! A portal's parameters as DuckDB values: text-format values as PostgreSQL
//! reads them (with its `bytea` and array literals rewritten for DuckDB), and
//! PostgreSQL's binary formats decoded.

use std::sync::Arc;

use bytes::Buf;
use duckdb::types::{TimeUnit, Value};
use pgwire::api::portal::Portal;
use pgwire::api::Type;

use super::Prepared;
use crate::analyst::error::SqlError;
use crate::analyst::types::{push_joined, push_quoted, render, PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// Converts a portal's parameters into DuckDB values: text-format values are
/// bound as VARCHAR and cast by DuckDB to the parameter's type; binary ones
/// are decoded from PostgreSQL's binary formats.
pub(super) fn bind_parameters(portal: &Portal<Arc<Prepared>>) -> Result<Vec<Value>, SqlError> {
    let described = &portal.statement.statement.described.params;
    (0..portal.parameter_len())
        .map(|i| {
            let ty = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| described.get(i).cloned())
                .unwrap_or(Type::TEXT);
            // What the statement takes there decides how PostgreSQL's text
            // forms of a bytea or an array are read, whatever the client declared.
            let takes = described.get(i).filter(|t| {
                **t == Type::BYTEA || matches!(t.kind(), tokio_postgres::types::Kind::Array(_))
            });
            match &portal.parameters[i] {
                None => Ok(Value::Null),
                // Bytes that are not text, sent for a parameter typed as text
                // or not at all (node-postgres sends a Buffer so): a blob.
                Some(bytes)
                    if portal.parameter_format.is_binary(i)
                        && matches!(ty, Type::TEXT | Type::UNKNOWN)
                        && std::str::from_utf8(bytes).is_err() =>
                {
                    Ok(Value::Blob(bytes.to_vec()))
                }
                Some(bytes) if portal.parameter_format.is_binary(i) => decode_binary(bytes, &ty),
                Some(bytes) => {
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        SqlError::new("22021", format!("parameter ${} is not UTF-8", i + 1))
                    })?;
                    decode_text(text, takes.unwrap_or(&ty), i)
                }
            }
        })
        .collect()
}

/// A text-format parameter: bound as VARCHAR for DuckDB to cast, except where
/// PostgreSQL's text form is not DuckDB's: `bytea` (`\x` hex or escapes) and
/// arrays (`{a,"b c",NULL}`, rewritten as DuckDB's list literal).
fn decode_text(text: String, ty: &Type, i: usize) -> Result<Value, SqlError> {
    let bad = |what: &str| {
        SqlError::new(
            "22P02",
            format!("parameter ${}: invalid input syntax for type {what}", i + 1),
        )
    };
    if *ty == Type::BYTEA {
        return decode_bytea(&text)
            .map(Value::Blob)
            .ok_or_else(|| bad("bytea"));
    }
    if let tokio_postgres::types::Kind::Array(_) = ty.kind() {
        let items = parse_array(&text).ok_or_else(|| bad(ty.name()))?;
        return Ok(Value::Text(duckdb_list_literal(
            items.iter().map(|item| item.as_deref()),
        )));
    }
    Ok(Value::Text(text))
}

/// PostgreSQL's bytea input: `\x` and hex digits, or the escape format
/// (`\\` for a backslash, `\ooo` octal, other bytes as they are).
fn decode_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// The elements of a one-dimensional PostgreSQL array literal (`None` for
/// NULL), or `None` when it is not one.
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '{' | '}' | '"') {
                    return None; // nested arrays are not taken
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_owned();
        }
        items.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Some(items),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// DuckDB's list literal, as its VARCHAR → LIST cast reads it: each element
/// in single quotes with `'` and `\` escaped, NULL bare.
fn duckdb_list_literal<'a>(items: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut out = String::new();
    push_joined(&mut out, ('[', ", ", ']'), items, |out, item| match item {
        None => out.push_str("NULL"),
        Some(item) => push_quoted(out, '\'', item),
    });
    out
}

/// A one-dimensional binary array of a scalar type, as DuckDB's list literal
/// of the elements' text.
fn decode_binary_array(bytes: &[u8], ty: &Type) -> Option<Value> {
    let tokio_postgres::types::Kind::Array(element) = ty.kind() else {
        return None;
    };
    let mut b = bytes;
    if b.len() < 12 {
        return None;
    }
    let (dimensions, _has_null, _oid) = (b.get_i32(), b.get_i32(), b.get_u32());
    let count = match dimensions {
        0 => 0,
        1 if b.len() >= 8 => {
            let (len, _lower) = (b.get_i32(), b.get_i32());
            usize::try_from(len).ok()?
        }
        _ => return None,
    };
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        if b.len() < 4 {
            return None;
        }
        let len = b.get_i32();
        if len < 0 {
            items.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return None;
        }
        let value = decode_binary(&b[..len], element).ok()?;
        b.advance(len);
        items.push(Some(match value {
            Value::Text(text) => text,
            other => render(&other, element),
        }));
    }
    if !b.is_empty() {
        return None;
    }
    Some(Value::Text(duckdb_list_literal(
        items.iter().map(|item| item.as_deref()),
    )))
}

fn decode_binary(bytes: &[u8], ty: &Type) -> Result<Value, SqlError> {
    let bad = || {
        SqlError::new(
            "22P03",
            format!("invalid binary value for a parameter of type {}", ty.name()),
        )
    };
    Ok(match *ty {
        Type::BOOL => Value::Boolean(u8::from_be_bytes(exact(bytes).ok_or_else(bad)?) != 0),
        Type::INT2 => Value::SmallInt(i16::from_be_bytes(exact(bytes).ok_or_else(bad)?)),
        Type::INT4 => Value::Int(i32::from_be_bytes(exact(bytes).ok_or_else(bad)?)),
        Type::INT8 => Value::BigInt(i64::from_be_bytes(exact(bytes).ok_or_else(bad)?)),
        Type::FLOAT4 => Value::Float(f32::from_be_bytes(exact(bytes).ok_or_else(bad)?)),
        Type::FLOAT8 => Value::Double(f64::from_be_bytes(exact(bytes).ok_or_else(bad)?)),
        // PostgreSQL sends ±infinity as the type's extreme values; DuckDB reads
        // them from text. A finite value out of DuckDB's range is refused.
        Type::DATE => match i32::from_be_bytes(exact(bytes).ok_or_else(bad)?) {
            i32::MAX => infinity(true),
            i32::MIN => infinity(false),
            days => Value::Date32(days.checked_add(PG_EPOCH_DAYS).ok_or_else(bad)?),
        },
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            match i64::from_be_bytes(exact(bytes).ok_or_else(bad)?) {
                i64::MAX => infinity(true),
                i64::MIN => infinity(false),
                micros => Value::Timestamp(
                    TimeUnit::Microsecond,
                    micros.checked_add(PG_EPOCH_MICROS).ok_or_else(bad)?,
                ),
            }
        }
        Type::UUID => Value::Text(
            uuid::Uuid::from_slice(bytes)
                .map_err(|_| bad())?
                .to_string(),
        ),
        Type::BYTEA => Value::Blob(bytes.to_vec()),
        Type::NUMERIC => Value::Text(decode_numeric(bytes).ok_or_else(bad)?),
        Type::JSONB => Value::Text(
            String::from_utf8(bytes.get(1..).unwrap_or_default().to_vec()).map_err(|_| bad())?,
        ),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?)
        }
        // Microseconds, days, months; DuckDB reads the three parts from text.
        Type::INTERVAL => {
            let whole: [u8; 16] = exact(bytes).ok_or_else(bad)?;
            let mut b = &whole[..];
            let (micros, days, months) = (b.get_i64(), b.get_i32(), b.get_i32());
            Value::Text(format!("{months} months {days} days {micros} microseconds"))
        }
        _ if matches!(ty.kind(), tokio_postgres::types::Kind::Array(_)) => {
            decode_binary_array(bytes, ty).ok_or_else(bad)?
        }
        _ => {
            return Err(SqlError::new(
                "0A000",
                format!(
                    "binary parameters of type {} are not supported; send the value as text",
                    ty.name()
                ),
            ))
        }
    })
}

/// A fixed-width binary value's bytes, when there are exactly `N` of them.
fn exact<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

/// PostgreSQL's ±infinity of a date or a timestamp, as the text DuckDB reads.
fn infinity(positive: bool) -> Value {
    Value::Text(if positive { "infinity" } else { "-infinity" }.to_owned())
}

/// PostgreSQL's binary `numeric` to a decimal string.
fn decode_numeric(mut b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = b.get_i16() as usize;
    let weight = i32::from(b.get_i16());
    let sign = b.get_u16();
    let dscale = b.get_u16() as usize;
    if sign == 0xC000 {
        return Some("NaN".to_owned());
    }
    if b.len() != ndigits * 2 {
        return None;
    }
    let digits: Vec<i16> = (0..ndigits).map(|_| b.get_i16()).collect();
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut position = weight + 1;
    while frac.len() < dscale {
        let d = if position < 0 {
            0
        } else {
            digits.get(position as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        position += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::decode_numeric;

    #[test]
    fn binary_numeric_decodes() {
        let bytes = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(decode_numeric(&bytes).as_deref(), Some("12345.678"));
        let small = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0, 100];
        assert_eq!(decode_numeric(&small).as_deref(), Some("-0.01"));
    }
}
