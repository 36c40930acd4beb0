//! `TIMESTAMPTZ` arithmetic without ICU.
//!
//! The bundled DuckDB has no ICU extension, and ICU is what gives DuckDB its
//! `TIMESTAMP WITH TIME ZONE` functions: `now() - INTERVAL 1 DAY`,
//! `date_trunc('day', placed_at)`, `extract(hour FROM placed_at)` all fail
//! without it ("No function matches", or an attempt to install `icu`). The
//! warehouse's time zone is UTC (the analyst endpoint reports `TimeZone` UTC),
//! so these are registered here as overloads of DuckDB's own functions,
//! computed in UTC: a `TIMESTAMPTZ` is microseconds since the Unix epoch, and
//! in UTC its calendar fields are those of the same `TIMESTAMP`.
//!
//! Registered on the instance when the warehouse opens: `+` and `-` with an
//! `INTERVAL`, `TIMESTAMPTZ - TIMESTAMPTZ`, `date_trunc`, `date_part` (and so
//! `extract`), `date_diff`/`datediff`, the field functions (`year`, `month`,
//! `day`, `hour`, …), `current_date` and `today`. A `CAST` of a `TIMESTAMPTZ`
//! to `DATE` is not among them (DuckDB's C API casts are not reachable here):
//! `date_trunc('day', t)` or `CAST(CAST(t AS TIMESTAMP) AS DATE)` give the day.

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, Timelike};
use duckdb::core::{DataChunkHandle, FlatVector, LogicalTypeHandle, LogicalTypeId};
use duckdb::ffi::{duckdb_interval, duckdb_string_t};
use duckdb::types::DuckString;
use duckdb::vscalar::{ScalarFunctionSignature, VScalar};
use duckdb::vtab::arrow::WritableVector;
use duckdb::Connection;

type Failure = Box<dyn std::error::Error>;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Declares a unit struct that is one overload ([`VScalar`]): its state, the
/// names its `invoke` gives the state, input and output, its signatures as
/// `[argument types] -> return type` (variants of [`LogicalTypeId`]), and the
/// body of `invoke`.
macro_rules! overload {
    (
        $(#[$doc:meta])*
        $name:ident($state:tt: $state_ty:ty, $input:ident, $output:ident)
        $([$($arg:ident),*] -> $ret:ident),+
        $body:block
    ) => {
        $(#[$doc])*
        struct $name;

        impl VScalar for $name {
            type State = $state_ty;

            fn invoke(
                $state: &$state_ty,
                $input: &mut DataChunkHandle,
                $output: &mut dyn WritableVector,
            ) -> Result<(), Failure> $body

            fn signatures() -> Vec<ScalarFunctionSignature> {
                vec![$(ScalarFunctionSignature::exact(
                    vec![$(ty(LogicalTypeId::$arg)),*],
                    ty(LogicalTypeId::$ret),
                )),+]
            }
        }
    };
}

/// Registers every overload on the instance `conn` belongs to.
pub fn register(conn: &Connection) -> duckdb::Result<()> {
    conn.register_scalar_function::<Plus>("+")?;
    conn.register_scalar_function::<Minus>("-")?;
    conn.register_scalar_function::<Trunc>("date_trunc")?;
    conn.register_scalar_function::<Trunc>("datetrunc")?;
    conn.register_scalar_function::<Part>("date_part")?;
    conn.register_scalar_function::<Part>("datepart")?;
    conn.register_scalar_function::<Diff>("date_diff")?;
    conn.register_scalar_function::<Diff>("datediff")?;
    for field in [
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "quarter",
        "dayofweek",
        "dayofyear",
        "week",
        "isodow",
    ] {
        conn.register_scalar_function_with_state::<Field>(field, &field.to_owned())?;
    }
    conn.register_scalar_function::<Today>("current_date")?;
    conn.register_scalar_function::<Today>("today")?;
    Ok(())
}

fn ty(id: LogicalTypeId) -> LogicalTypeHandle {
    LogicalTypeHandle::from(id)
}

fn datetime(micros: i64) -> Result<NaiveDateTime, Failure> {
    DateTime::from_timestamp_micros(micros)
        .map(|d| d.naive_utc())
        .ok_or_else(|| format!("timestamp {micros} µs is out of range").into())
}

fn micros(dt: NaiveDateTime) -> i64 {
    dt.and_utc().timestamp_micros()
}

/// `ts + interval` (or minus): months first, clamped to the month's last day,
/// then days, then microseconds, as DuckDB adds an interval to a timestamp.
fn add(ts: i64, iv: &duckdb_interval, sign: i32) -> Result<i64, Failure> {
    let dt = datetime(ts)?;
    let months = i64::from(iv.months) * i64::from(sign);
    let dt = if months >= 0 {
        dt.checked_add_months(Months::new(months as u32))
    } else {
        dt.checked_sub_months(Months::new((-months) as u32))
    }
    .ok_or("timestamp out of range")?;
    let days = i64::from(iv.days) * i64::from(sign);
    micros(dt)
        .checked_add(days * MICROS_PER_DAY)
        .and_then(|v| v.checked_add(iv.micros * i64::from(sign)))
        .ok_or_else(|| "timestamp out of range".into())
}

/// A chunk's input columns, fetched once per chunk (not per row).
struct Columns<'a> {
    vectors: Vec<FlatVector<'a>>,
    len: usize,
}

impl Columns<'_> {
    fn any_null(&self, row: usize) -> bool {
        self.vectors.iter().any(|v| v.row_is_null(row as u64))
    }

    /// Row `row` of column `column`, whose physical type is `T`.
    fn get<T: Copy>(&self, column: usize, row: usize) -> T {
        // SAFETY: `T` is the column's physical type (the signature fixes it) and
        // `row` is below the chunk's length (DuckDB flattens the input).
        unsafe { self.vectors[column].as_slice_with_len::<T>(self.len)[row] }
    }

    /// A VARCHAR argument (a date part), lower-cased.
    fn text(&self, column: usize, row: usize) -> String {
        let value = self.get::<duckdb_string_t>(column, row);
        DuckString::new(&mut { value }).as_str().to_lowercase()
    }
}

/// Writes `f(columns, row)` for every row, NULL where an input is NULL. `T`
/// must be the output type's physical type.
fn each<T: Copy>(
    input: &DataChunkHandle,
    output: &mut dyn WritableVector,
    mut f: impl FnMut(&Columns<'_>, usize) -> Result<T, Failure>,
) -> Result<(), Failure> {
    let columns = Columns {
        vectors: (0..input.num_columns())
            .map(|c| input.flat_vector(c))
            .collect(),
        len: input.len(),
    };
    let mut out = output.flat_vector();
    // SAFETY: `T` is the physical type of the declared return type, and the
    // output vector holds at least the chunk's rows.
    let values = unsafe { out.as_mut_ptr::<T>() };
    for row in 0..columns.len {
        if columns.any_null(row) {
            out.set_null(row);
            continue;
        }
        let value = f(&columns, row)?;
        // SAFETY: as above; `row` is below the chunk's length.
        unsafe { values.add(row).write(value) };
    }
    Ok(())
}

fn is(input: &DataChunkHandle, column: usize, id: LogicalTypeId) -> bool {
    input.flat_vector(column).logical_type().id() == id
}

overload! {
    /// `TIMESTAMPTZ + INTERVAL` and `INTERVAL + TIMESTAMPTZ`.
    Plus(_: (), input, output)
    [TimestampTZ, Interval] -> TimestampTZ,
    [Interval, TimestampTZ] -> TimestampTZ
    {
        let (ts, iv) = if is(input, 0, LogicalTypeId::TimestampTZ) {
            (0, 1)
        } else {
            (1, 0)
        };
        each(input, output, |cols, row| {
            add(
                cols.get::<i64>(ts, row),
                &cols.get::<duckdb_interval>(iv, row),
                1,
            )
        })
    }
}

overload! {
    /// `TIMESTAMPTZ - INTERVAL` and `TIMESTAMPTZ - TIMESTAMPTZ` (an interval of
    /// days and microseconds, as DuckDB subtracts timestamps).
    Minus(_: (), input, output)
    [TimestampTZ, Interval] -> TimestampTZ,
    [TimestampTZ, TimestampTZ] -> Interval
    {
        if is(input, 1, LogicalTypeId::Interval) {
            return each(input, output, |cols, row| {
                add(
                    cols.get::<i64>(0, row),
                    &cols.get::<duckdb_interval>(1, row),
                    -1,
                )
            });
        }
        each(input, output, |cols, row| {
            let diff = cols
                .get::<i64>(0, row)
                .checked_sub(cols.get::<i64>(1, row))
                .ok_or("interval out of range")?;
            Ok(duckdb_interval {
                months: 0,
                days: i32::try_from(diff / MICROS_PER_DAY)?,
                micros: diff % MICROS_PER_DAY,
            })
        })
    }
}

/// The start of the `part` that holds `dt`.
fn truncate(part: &str, dt: NaiveDateTime) -> Result<NaiveDateTime, Failure> {
    let date = dt.date();
    let start_of = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN);
    let year_start = |year: i32| {
        NaiveDate::from_ymd_opt(year, 1, 1)
            .map(start_of)
            .ok_or_else(|| Failure::from("year out of range"))
    };
    Ok(match part {
        "microsecond" | "microseconds" | "us" => dt,
        "millisecond" | "milliseconds" | "ms" => {
            dt - chrono::Duration::nanoseconds(i64::from(dt.nanosecond() % 1_000_000))
        }
        "second" | "seconds" | "s" => {
            dt - chrono::Duration::nanoseconds(i64::from(dt.nanosecond()))
        }
        "minute" | "minutes" | "m" => {
            start_of(date) + chrono::Duration::minutes(i64::from(dt.hour() * 60 + dt.minute()))
        }
        "hour" | "hours" | "h" => start_of(date) + chrono::Duration::hours(i64::from(dt.hour())),
        "day" | "days" | "d" | "dayofmonth" => start_of(date),
        "week" | "weeks" | "w" | "yearweek" => start_of(
            date - chrono::Duration::days(i64::from(date.weekday().num_days_from_monday())),
        ),
        "month" | "months" | "mon" => {
            start_of(date - chrono::Duration::days(i64::from(date.day0())))
        }
        "quarter" | "quarters" => {
            let month = (date.month() - 1) / 3 * 3 + 1;
            start_of(
                NaiveDate::from_ymd_opt(date.year(), month, 1)
                    .ok_or_else(|| Failure::from("year out of range"))?,
            )
        }
        "year" | "years" | "y" | "yr" => year_start(date.year())?,
        "decade" | "decades" => year_start(date.year().div_euclid(10) * 10)?,
        "century" | "centuries" => year_start((date.year() - 1).div_euclid(100) * 100 + 1)?,
        "millennium" | "millennia" => year_start((date.year() - 1).div_euclid(1000) * 1000 + 1)?,
        other => return Err(format!("unknown date part \"{other}\"").into()),
    })
}

/// The `part` field of `dt`, as `date_part` gives it.
fn field(part: &str, dt: NaiveDateTime) -> Result<i64, Failure> {
    let date = dt.date();
    Ok(match part {
        "year" | "years" | "y" | "yr" => i64::from(date.year()),
        "month" | "months" | "mon" => i64::from(date.month()),
        "day" | "days" | "d" | "dayofmonth" => i64::from(date.day()),
        "hour" | "hours" | "h" => i64::from(dt.hour()),
        "minute" | "minutes" | "m" => i64::from(dt.minute()),
        "second" | "seconds" | "s" => i64::from(dt.second()),
        "millisecond" | "milliseconds" | "ms" => {
            i64::from(dt.second()) * 1000 + i64::from(dt.nanosecond() / 1_000_000)
        }
        "microsecond" | "microseconds" | "us" => {
            i64::from(dt.second()) * 1_000_000 + i64::from(dt.nanosecond() / 1000)
        }
        "quarter" | "quarters" => i64::from((date.month() - 1) / 3 + 1),
        "dow" | "dayofweek" | "weekday" => i64::from(date.weekday().num_days_from_sunday()),
        "isodow" => i64::from(date.weekday().number_from_monday()),
        "doy" | "dayofyear" => i64::from(date.ordinal()),
        "week" | "weeks" | "w" | "weekofyear" => i64::from(date.iso_week().week()),
        "isoyear" => i64::from(date.iso_week().year()),
        "decade" | "decades" => i64::from(date.year().div_euclid(10)),
        "century" | "centuries" => i64::from((date.year() - 1).div_euclid(100) + 1),
        "millennium" | "millennia" => i64::from((date.year() - 1).div_euclid(1000) + 1),
        "epoch" => dt.and_utc().timestamp(),
        other => return Err(format!("unknown date part \"{other}\"").into()),
    })
}

/// `date_diff(part, a, b)`: how many `part` boundaries lie between `a` and
/// `b`, as DuckDB counts them.
fn diff(part: &str, a: NaiveDateTime, b: NaiveDateTime) -> Result<i64, Failure> {
    let months = |d: NaiveDateTime| i64::from(d.year()) * 12 + i64::from(d.month()) - 1;
    let unit = |truncated: &str, length: i64| -> Result<i64, Failure> {
        Ok((micros(truncate(truncated, b)?) - micros(truncate(truncated, a)?)) / length)
    };
    Ok(match part {
        "year" | "years" | "y" | "yr" => i64::from(b.year() - a.year()),
        "quarter" | "quarters" => months(b) / 3 - months(a) / 3,
        "month" | "months" | "mon" => months(b) - months(a),
        "week" | "weeks" | "w" => unit("week", 7 * MICROS_PER_DAY)?,
        "day" | "days" | "d" | "dayofmonth" => unit("day", MICROS_PER_DAY)?,
        "hour" | "hours" | "h" => unit("hour", 3_600_000_000)?,
        "minute" | "minutes" | "m" => unit("minute", 60_000_000)?,
        "second" | "seconds" | "s" => unit("second", 1_000_000)?,
        "millisecond" | "milliseconds" | "ms" => unit("millisecond", 1000)?,
        "microsecond" | "microseconds" | "us" => micros(b) - micros(a),
        other => return Err(format!("unknown date part \"{other}\"").into()),
    })
}

overload! {
    /// `date_trunc(part, TIMESTAMPTZ)`.
    Trunc(_: (), input, output)
    [Varchar, TimestampTZ] -> TimestampTZ
    {
        each(input, output, |cols, row| {
            let dt = datetime(cols.get::<i64>(1, row))?;
            Ok(micros(truncate(&cols.text(0, row), dt)?))
        })
    }
}

overload! {
    /// `date_part(part, TIMESTAMPTZ)`, which `extract(part FROM …)` calls.
    Part(_: (), input, output)
    [Varchar, TimestampTZ] -> Bigint
    {
        each(input, output, |cols, row| {
            field(&cols.text(0, row), datetime(cols.get::<i64>(1, row))?)
        })
    }
}

overload! {
    /// `date_diff(part, TIMESTAMPTZ, TIMESTAMPTZ)`.
    Diff(_: (), input, output)
    [Varchar, TimestampTZ, TimestampTZ] -> Bigint
    {
        each(input, output, |cols, row| {
            let a = datetime(cols.get::<i64>(1, row))?;
            let b = datetime(cols.get::<i64>(2, row))?;
            diff(&cols.text(0, row), a, b)
        })
    }
}

overload! {
    /// `year(TIMESTAMPTZ)`, `hour(…)`, …: the field named by the state.
    Field(part: String, input, output)
    [TimestampTZ] -> Bigint
    {
        each(input, output, |cols, row| {
            field(part, datetime(cols.get::<i64>(0, row))?)
        })
    }
}

overload! {
    /// `current_date` and `today()`: today's date in UTC.
    Today(_: (), input, output)
    [] -> Date
    {
        let days = chrono::Utc::now().date_naive().num_days_from_ce()
            - DateTime::UNIX_EPOCH.date_naive().num_days_from_ce();
        let len = input.len().max(1);
        let mut out = output.flat_vector();
        // SAFETY: DATE's physical type is i32 (days since the Unix epoch).
        let slice = unsafe { out.as_mut_slice_with_len::<i32>(len) };
        slice.fill(days);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
