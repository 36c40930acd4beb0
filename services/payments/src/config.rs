//! The payments service's configuration from the environment: the authorization
//! limit, read in this one place by every edge that authorizes payments (the HTTP
//! API and the reactor), so both decline by the same rule.

use sluice_platform::values::Amount;

/// The variable that sets the authorization limit, in minor units.
pub const AUTHORIZATION_LIMIT_VAR: &str = "PAYMENTS_AUTHORIZATION_LIMIT_MINOR";
/// The authorization limit when [`AUTHORIZATION_LIMIT_VAR`] is not set.
pub const DEFAULT_AUTHORIZATION_LIMIT_MINOR: i64 = 100_000;

/// The authorization limit from [`AUTHORIZATION_LIMIT_VAR`], or the default when it
/// is unset; an error naming the variable when it is set but not a non-negative
/// integer (a misconfigured limit must stop the service, not be guessed).
pub fn authorization_limit() -> Result<Amount, String> {
    let raw = std::env::var(AUTHORIZATION_LIMIT_VAR).ok();
    parse_authorization_limit(raw.as_deref())
}

/// Parses the authorization limit: a non-negative integer of minor units.
fn parse_authorization_limit(raw: Option<&str>) -> Result<Amount, String> {
    let Some(raw) = raw else {
        return Amount::new(DEFAULT_AUTHORIZATION_LIMIT_MINOR).map_err(|e| e.to_string());
    };
    raw.trim()
        .parse::<i64>()
        .ok()
        .and_then(|minor| Amount::new(minor).ok())
        .ok_or_else(|| {
            format!(
                "{AUTHORIZATION_LIMIT_VAR}=`{raw}` must be a non-negative integer of minor units, e.g. 100000"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_limit_defaults_and_is_validated() {
        assert_eq!(
            parse_authorization_limit(None),
            Ok(Amount::new(DEFAULT_AUTHORIZATION_LIMIT_MINOR).unwrap())
        );
        assert_eq!(
            parse_authorization_limit(Some(" 2500 ")),
            Ok(Amount::new(2500).unwrap())
        );
        for bad in ["-1", "lots", "", "1.5"] {
            let error = parse_authorization_limit(Some(bad)).unwrap_err();
            assert!(error.contains(AUTHORIZATION_LIMIT_VAR), "{error}");
        }
    }
}
