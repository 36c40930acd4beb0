//! CancelRequest: psql's Ctrl-C, JDBC's `Statement.cancel`, libpq's
//! `PQcancel`. A client cancels on a new connection with the backend key it
//! was given at startup (`BackendKeyData`); the session holding that key has
//! its running statement interrupted and answers `57014` *canceling statement
//! due to user request*. The session stays usable. A key that matches no
//! session, or a cancel between statements, does nothing (as in PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, PidSecretKeyGenerator, RandomPidSecretKeyGenerator};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
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

    /// Interrupts the statement running now in the session with this backend key,
    /// if there is one.
    fn cancel(&self, pid: i32, secret: Bytes) {
        let signal = self.sessions().get(&(pid, secret)).cloned();
        match signal {
            Some(signal) => {
                tracing::debug!(pid, "analyst session: cancel requested");
                // Only a statement running now is cancelled.
                signal.notify_waiters();
            }
            None => tracing::debug!(pid, "cancel request for no session"),
        }
    }
}

/// The request code of a CancelRequest (`1234 << 16 | 5678`).
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// The longest CancelRequest: a 256-byte secret key (protocol 3.2) after the
/// length, the code and the process id.
const CANCEL_REQUEST_MAX: usize = 12 + 256;

/// What a new connection opened with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A CancelRequest, read and answered: the connection is done.
    Cancel,
    /// Anything else (a startup or an SSL request), left unread for the session.
    Session,
    /// Nothing within the startup timeout, or a closed or broken connection.
    Silent,
}

/// Looks at what a new connection sends first, without consuming it, and
/// answers a CancelRequest there and then: a cancel takes no session slot and no
/// warehouse connection, so it gets through when the endpoint is full, as it
/// does in PostgreSQL.
pub(crate) async fn answer_cancel(
    socket: &mut TcpStream,
    cancels: &Cancels,
    wait: Duration,
) -> Opening {
    let deadline = tokio::time::Instant::now() + wait;
    let mut head = [0u8; 8];
    loop {
        let peeked = tokio::time::timeout_at(deadline, socket.peek(&mut head)).await;
        match peeked {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Opening::Silent,
            Ok(Ok(n)) if n >= head.len() => break,
            // Part of the first message: the rest is on its way.
            Ok(Ok(_)) => {
                if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5)))
                    .await
                    .is_err()
                {
                    return Opening::Silent;
                }
            }
        }
    }
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if code != CANCEL_REQUEST_CODE {
        return Opening::Session;
    }
    if !(12 + 4..=CANCEL_REQUEST_MAX).contains(&length) {
        tracing::debug!(length, "malformed cancel request");
        return Opening::Silent;
    }
    let mut request = vec![0u8; length];
    match tokio::time::timeout_at(deadline, socket.read_exact(&mut request)).await {
        Ok(Ok(_)) => {}
        _ => return Opening::Silent,
    }
    let pid = i32::from_be_bytes([request[8], request[9], request[10], request[11]]);
    cancels.cancel(pid, Bytes::copy_from_slice(&request[12..]));
    Opening::Cancel
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
        self.0.cancel(request.pid, request.secret_key.to_bytes());
    }
}
