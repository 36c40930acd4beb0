//! The payments service's settings: the authorization limit, read in this one place
//! by every edge that authorizes payments (the HTTP API, the reactor, `sluice
//! load`), so all decline by the same rule.
//!
//! The limit is set in `sluice.toml` (`[components.payments].extra_env`); the
//! environment variable of the same name overrides it. A registry that sets no limit,
//! or a limit that is not a non-negative integer, stops the service at start: the
//! limit is never guessed.

use sluice_platform::registry::Component;
use sluice_platform::service::ServiceError;
use sluice_platform::values::Amount;

/// The setting of the authorization limit, in minor units: a key of the registry's
/// `extra_env` and the environment variable that overrides it.
pub const AUTHORIZATION_LIMIT_VAR: &str = "PAYMENTS_AUTHORIZATION_LIMIT_MINOR";

/// The authorization limit of `component` (the registry's payments entry): from
/// [`AUTHORIZATION_LIMIT_VAR`] in the environment, else from the registry.
pub fn authorization_limit(component: &Component) -> Result<Amount, ServiceError> {
    let from_env = std::env::var(AUTHORIZATION_LIMIT_VAR).ok();
    let raw = from_env.as_deref().or(component
        .extra_env
        .get(AUTHORIZATION_LIMIT_VAR)
        .map(String::as_str));
    parse_authorization_limit(raw).map_err(|reason| ServiceError::Setting {
        component: component.name.clone(),
        setting: AUTHORIZATION_LIMIT_VAR.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Parses the authorization limit: a non-negative integer of minor units.
fn parse_authorization_limit(raw: Option<&str>) -> Result<Amount, &'static str> {
    let raw = raw.ok_or(
        "is not set: set it in sluice.toml ([components.payments].extra_env) or in the environment",
    )?;
    raw.trim()
        .parse::<i64>()
        .ok()
        .and_then(|minor| Amount::new(minor).ok())
        .ok_or("must be a non-negative integer of minor units, e.g. 100000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_limit_is_required_and_validated() {
        assert_eq!(
            parse_authorization_limit(Some(" 2500 ")),
            Ok(Amount::new(2500).unwrap())
        );
        assert!(parse_authorization_limit(None)
            .unwrap_err()
            .contains("sluice.toml"));
        for bad in ["-1", "lots", "", "1.5"] {
            assert!(parse_authorization_limit(Some(bad))
                .unwrap_err()
                .contains("non-negative integer"));
        }
    }
}
