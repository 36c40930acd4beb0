//! Who may connect: SCRAM-SHA-256 (RFC 5802, RFC 7677) against stored
//! verifiers, and a limit of sessions per analyst.
//!
//! The endpoint never holds a password. Each analyst is configured with a
//! verifier in PostgreSQL's own format (what `pg_authid.rolpassword` holds):
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
//! ```
//!
//! The client proves it knows the password; the verifier can check that proof
//! but cannot be used to log in. `sluice analyst add <name>` writes one, and a
//! verifier copied from a PostgreSQL server works unchanged.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// PostgreSQL's iteration count (`scram_iterations`, 4096 by default).
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
const PREFIX: &str = "SCRAM-SHA-256$";

/// One analyst's SCRAM-SHA-256 verifier. `Debug` shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

/// A configured analyst credential that is not a SCRAM-SHA-256 verifier.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The stored credential is not in the verifier format at all (a plain password?).
    #[error(
        "is not a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`); \
         passwords are not stored in plain text: write a verifier with `sluice analyst add <name>`"
    )]
    NotAVerifier,
    /// It looks like a verifier but a part of it does not decode.
    #[error("has a malformed SCRAM-SHA-256 verifier: {0}")]
    Malformed(&'static str),
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt and PostgreSQL's
    /// iteration count.
    pub fn new(password: &str) -> Verifier {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Verifier::with_salt(password, salt, ITERATIONS)
    }

    /// The verifier of `password` with this salt and iteration count (the
    /// password is SASLprep-normalized, as PostgreSQL and every client do).
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = gen_salted_password(password, &salt, iterations as usize);
        match ScramSecret::verifier_from_salted_password(salt, salted, iterations as usize) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Verifier {
                iterations: iterations as u32,
                salt,
                stored_key,
                server_key,
            },
            ScramSecret::SaltedPassword { .. } => unreachable!("a verifier is derived"),
        }
    }

    /// Whether `password` is the one this verifier was made from (the same
    /// derivation the SCRAM exchange checks; for tools and tests).
    pub fn matches(&self, password: &str) -> bool {
        Verifier::with_salt(password, self.salt.clone(), self.iterations) == *self
    }

    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations as usize,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

impl FromStr for Verifier {
    type Err = VerifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(VerifierError::NotAVerifier)?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(VerifierError::Malformed("no `$` before the keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or(VerifierError::Malformed(
            "no `:` between iterations and salt",
        ))?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(VerifierError::Malformed(
            "no `:` between StoredKey and ServerKey",
        ))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| VerifierError::Malformed("the iteration count is not a number"))?;
        if iterations == 0 {
            return Err(VerifierError::Malformed("the iteration count is 0"));
        }
        let decode = |what: &'static str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|_| VerifierError::Malformed(what))
        };
        let salt = decode("the salt is not base64", salt)?;
        let stored_key = decode("StoredKey is not base64", stored_key)?;
        let server_key = decode("ServerKey is not base64", server_key)?;
        if salt.is_empty() {
            return Err(VerifierError::Malformed("the salt is empty"));
        }
        if stored_key.len() != KEY_LEN || server_key.len() != KEY_LEN {
            return Err(VerifierError::Malformed("a key is not 32 bytes (SHA-256)"));
        }
        Ok(Verifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

impl fmt::Display for Verifier {
    /// PostgreSQL's text form, as `pg_authid.rolpassword` holds it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The configured analysts and how many sessions each has open.
pub(crate) struct Analysts {
    verifiers: BTreeMap<String, Verifier>,
    per_analyst: usize,
    open: Mutex<HashMap<String, usize>>,
    /// Salts the decoy verifier of an unknown user name, so that the same
    /// name always gets the same salt, like a real one.
    decoy: [u8; KEY_LEN],
}

impl Analysts {
    pub(crate) fn new(verifiers: BTreeMap<String, Verifier>, per_analyst: usize) -> Self {
        let mut decoy = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut decoy);
        Analysts {
            verifiers,
            per_analyst,
            open: Mutex::new(HashMap::new()),
            decoy,
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of `user`'s session slots, or says why not.
    fn reserve(self: &Arc<Self>, user: &str) -> PgWireResult<Slot> {
        let mut open = self.open();
        let count = open.entry(user.to_owned()).or_default();
        if *count >= self.per_analyst {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".to_owned(),
                "53300".to_owned(),
                format!("too many connections for role \"{user}\""),
            ))));
        }
        *count += 1;
        Ok(Slot {
            analysts: self.clone(),
            user: user.to_owned(),
        })
    }

    /// What an unknown user name is challenged with: a verifier no password
    /// matches, with a salt stable per name. The exchange looks the same as for
    /// a real analyst and fails the same way (28P01), so names cannot be probed.
    fn decoy(&self, user: &str) -> ScramSecret {
        let digest = Sha256::new()
            .chain_update(self.decoy)
            .chain_update(user.as_bytes())
            .finalize();
        let mut key = vec![0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        ScramSecret::Verifier {
            salt: digest[..SALT_LEN].to_vec(),
            iterations: ITERATIONS as usize,
            stored_key: key.clone(),
            server_key: key,
        }
    }
}

impl fmt::Debug for Analysts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.verifiers.keys()).finish()
    }
}

/// One open session of an analyst; dropping it frees the slot.
struct Slot {
    analysts: Arc<Analysts>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.analysts.open();
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// The credentials one connection authenticates against. It holds the
/// analyst's session slot from the SCRAM exchange to the end of the session
/// (a connection that fails to authenticate is closed at once, or at the
/// startup timeout, and gives it back).
pub(crate) struct SessionAuth {
    analysts: Arc<Analysts>,
    slot: Mutex<Option<Slot>>,
}

impl SessionAuth {
    pub(crate) fn new(analysts: Arc<Analysts>) -> Self {
        SessionAuth {
            analysts,
            slot: Mutex::new(None),
        }
    }
}

impl fmt::Debug for SessionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionAuth").finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for SessionAuth {
    /// Only SCRAM is offered: no password is there to hand out.
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::UnsupportedSASLAuthMethod(
            "password authentication other than SCRAM-SHA-256".to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        let Some(verifier) = self.analysts.verifiers.get(user) else {
            return Ok((self.analysts.decoy(user), None));
        };
        let slot = self.analysts.reserve(user)?;
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
        Ok((verifier.secret(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_round_trips_through_postgres_text_form() {
        let verifier = Verifier::new("correct horse");
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(text.parse::<Verifier>().unwrap(), verifier);
        assert!(verifier.matches("correct horse"));
        assert!(!verifier.matches("correct horse "));
        assert!(!format!("{verifier:?}").contains(&STANDARD.encode(&verifier.stored_key)));
    }

    #[test]
    fn plain_text_and_malformed_verifiers_are_refused() {
        assert!(matches!(
            "analyst-dev".parse::<Verifier>(),
            Err(VerifierError::NotAVerifier)
        ));
        assert!(matches!(
            "md5d6a35858d61d85e4a82ab1fb044aba9d".parse::<Verifier>(),
            Err(VerifierError::NotAVerifier)
        ));
        for bad in [
            "SCRAM-SHA-256$4096:c2FsdA==",
            "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:!!$AAAA:AAAA",
        ] {
            assert!(
                matches!(bad.parse::<Verifier>(), Err(VerifierError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
