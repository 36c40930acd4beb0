//! CancelRequest: psql's Ctrl-C, JDBC's `Statement.cancel`, libpq's
//! `PQcancel`. A client cancels on a new connection with the backend key it
//! was given at startup (`BackendKeyData`); the session holding that key has
//! its running statement interrupted and answers `57014` *canceling statement
//! due to user request*. The session stays usable. A key that matches no
//! session, or a cancel between statements, does nothing (as in PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::Notify;

/// The sessions a CancelRequest can reach, by backend key.
#[derive(Default)]
pub(crate) struct Cancels {
    sessions: Mutex<HashMap<(i32, Bytes), Arc<Notify>>>,
    /// Process ids and secret keys for every session of the endpoint.
    keys: RandomPidSecretKeyGenerator,
}

impl Cancels {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, Bytes), Arc<Notify>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The backend key of one session: generated at startup and registered with
/// the session's cancel signal; unregistered when the session ends.
pub(crate) struct SessionKey {
    cancels: Arc<Cancels>,
    signal: Arc<Notify>,
    registered: Mutex<Option<(i32, Bytes)>>,
    /// Set once the key is handed out: the client has authenticated.
    authenticated: Arc<std::sync::atomic::AtomicBool>,
}

impl SessionKey {
    pub(crate) fn new(
        cancels: Arc<Cancels>,
        signal: Arc<Notify>,
        authenticated: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        SessionKey {
            cancels,
            signal,
            registered: Mutex::new(None),
            authenticated,
        }
    }
}

impl PidSecretKeyGenerator for SessionKey {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let (pid, secret) = self.cancels.keys.generate(client);
        let key = (pid, secret.to_bytes());
        self.cancels
            .sessions()
            .insert(key.clone(), self.signal.clone());
        *self.registered.lock().unwrap_or_else(|e| e.into_inner()) = Some(key);
        self.authenticated
            .store(true, std::sync::atomic::Ordering::SeqCst);
        (pid, secret)
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        let key = self
            .registered
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(key) = key {
            self.cancels.sessions().remove(&key);
        }
    }
}

/// Answers CancelRequests by signalling the session with that key.
pub(crate) struct CancelSessions(pub(crate) Arc<Cancels>);

#[async_trait]
impl CancelHandler for CancelSessions {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let signal = self
            .0
            .sessions()
            .get(&(request.pid, request.secret_key.to_bytes()))
            .cloned();
        match signal {
            Some(signal) => {
                tracing::debug!(pid = request.pid, "analyst session: cancel requested");
                // Only a statement running now is cancelled.
                signal.notify_waiters();
            }
            None => tracing::debug!(pid = request.pid, "cancel request for no session"),
        }
    }
}
