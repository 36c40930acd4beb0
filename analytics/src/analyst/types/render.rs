//! Values as the text PostgreSQL prints for them: scalars, one-dimensional
//! arrays (`{a,"b c",NULL}`), nested values as JSON or as DuckDB literals.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate};
use duckdb::types::Value;
use pgwire::api::Type;

use super::{as_i128, element_of};

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
    push_joined(out, ('{', ",", '}'), items, |out, item| {
        if matches!(item, Value::Null) {
            out.push_str("NULL");
            return;
        }
        let text = render(item, element);
        let quote = text.is_empty()
            || text.eq_ignore_ascii_case("null")
            || text
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | ',' | '{' | '}'));
        if quote {
            push_quoted(out, '"', &text);
        } else {
            out.push_str(&text);
        }
    });
}

/// Writes `open`, then each of `items` by `write` with `separator` between
/// them, then `close`: the frame of every list, array and object rendered here.
pub(crate) fn push_joined<T>(
    out: &mut String,
    (open, separator, close): (char, &str, char),
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        write(out, item);
    }
    out.push(close);
}

/// `text` between two `quote`s, with `quote` and `\` escaped by a backslash.
pub(crate) fn push_quoted(out: &mut String, quote: char, text: &str) {
    out.push(quote);
    for c in text.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(quote);
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
            push_joined(out, ('[', ",", ']'), items, render_json);
        }
        Value::Struct(fields) => {
            push_joined(out, ('{', ",", '}'), fields.iter(), |out, (name, item)| {
                push_json_string(out, name);
                out.push(':');
                render_json(out, item);
            })
        }
        Value::Map(entries) => {
            push_joined(out, ('{', ",", '}'), entries.iter(), |out, (key, item)| {
                let mut name = String::new();
                render_into(&mut name, key, true, false);
                push_json_string(out, &name);
                out.push(':');
                render_json(out, item);
            })
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
            push_joined(out, ('[', ", ", ']'), items, |out, item| {
                render_into(out, item, with_zone, true);
            });
        }
        Value::Struct(fields) => {
            push_joined(out, ('{', ", ", '}'), fields.iter(), |out, (name, item)| {
                let _ = write!(out, "'{}': ", name.replace('\'', "''"));
                render_into(out, item, with_zone, true);
            })
        }
        Value::Map(entries) => {
            push_joined(out, ('{', ", ", '}'), entries.iter(), |out, (key, item)| {
                render_into(out, key, with_zone, true);
                out.push('=');
                render_into(out, item, with_zone, true);
            })
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
