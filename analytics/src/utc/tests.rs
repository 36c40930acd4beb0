//! Unit tests of `utc`.

use super::*;

fn at(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

#[test]
fn truncation_fields_and_differences_follow_duckdb() {
    let t = at("2024-05-15 13:45:30.123456");
    assert_eq!(truncate("day", t).unwrap(), at("2024-05-15 00:00:00.0"));
    assert_eq!(truncate("week", t).unwrap(), at("2024-05-13 00:00:00.0"));
    assert_eq!(truncate("quarter", t).unwrap(), at("2024-04-01 00:00:00.0"));
    assert_eq!(truncate("hour", t).unwrap(), at("2024-05-15 13:00:00.0"));
    assert_eq!(
        truncate("millisecond", t).unwrap(),
        at("2024-05-15 13:45:30.123")
    );
    assert_eq!(truncate("century", t).unwrap(), at("2001-01-01 00:00:00.0"));
    assert_eq!(field("dow", t).unwrap(), 3);
    assert_eq!(field("isodow", t).unwrap(), 3);
    assert_eq!(field("doy", t).unwrap(), 136);
    assert_eq!(field("microseconds", t).unwrap(), 30_123_456);
    assert_eq!(
        diff(
            "day",
            at("2024-05-15 23:59:00.0"),
            at("2024-05-16 00:01:00.0")
        )
        .unwrap(),
        1
    );
    assert_eq!(
        diff(
            "month",
            at("2024-01-31 00:00:00.0"),
            at("2024-02-01 00:00:00.0")
        )
        .unwrap(),
        1
    );
    assert_eq!(
        diff(
            "year",
            at("2024-12-31 00:00:00.0"),
            at("2023-01-01 00:00:00.0")
        )
        .unwrap(),
        -1
    );
    assert!(field("fortnight", t).is_err());
    // Months clamp to the month's last day, then days and microseconds.
    let iv = duckdb_interval {
        months: 1,
        days: 1,
        micros: 1,
    };
    let jan31 = micros(at("2024-01-31 10:00:00.0"));
    assert_eq!(
        datetime(add(jan31, &iv, 1).unwrap()).unwrap(),
        at("2024-03-01 10:00:00.000001")
    );
    assert_eq!(
        datetime(add(jan31, &iv, -1).unwrap()).unwrap(),
        at("2023-12-30 09:59:59.999999")
    );
}
