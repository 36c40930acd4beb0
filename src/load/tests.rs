//! Unit tests of `sluice load`: its bounds, durations and percentiles.

use super::report::percentile;
use super::*;

fn plan() -> LoadPlan {
    LoadPlan {
        rate: 100,
        duration: Some(Duration::from_secs(10)),
        orders: None,
        host: "127.0.0.1".parse().unwrap(),
        declined: 0.1,
        cancelled: 0.1,
        retried: 0.05,
        authorization_limit_minor: 100_000,
    }
}

#[test]
fn load_is_bounded_to_this_machine_and_to_limits() {
    assert!(plan().check().is_ok());
    let remote = LoadPlan {
        host: "10.0.0.7".parse().unwrap(),
        ..plan()
    };
    assert!(remote
        .check()
        .unwrap_err()
        .to_string()
        .contains("not a loopback"));
    let endless = LoadPlan {
        duration: None,
        ..plan()
    };
    assert!(endless.check().is_err());
    let flood = LoadPlan {
        rate: MAX_RATE + 1,
        ..plan()
    };
    assert!(flood.check().is_err());
    let both = LoadPlan {
        orders: Some(5),
        ..plan()
    };
    assert!(both.check().is_err());
    let shares = LoadPlan {
        declined: 0.7,
        cancelled: 0.6,
        ..plan()
    };
    assert!(shares.check().is_err());
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
    assert!(parse_duration("soon").is_err());
    assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
}

#[test]
fn percentiles_are_nearest_rank() {
    let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
    assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
    assert_eq!(percentile(&[], 99.0), Duration::ZERO);
}
