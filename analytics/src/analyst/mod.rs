//! The analyst SQL endpoint: the warehouse over the PostgreSQL wire protocol,
//! read-only.
//!
//! Any PostgreSQL client (psql, DBeaver, tokio-postgres, JDBC) connects with
//! an analyst's user name and password (SCRAM-SHA-256 against a stored
//! verifier, over TLS when a certificate is configured), and runs queries while the sink
//! keeps loading. Each session has its own DuckDB connection to the process's
//! one [`Warehouse`] instance.
//!
//! Invariant: nothing an analyst sends can write, attach, read a local file or
//! change a setting. Two layers hold it: the sandboxed instance (external
//! access off, configuration locked, each statement in a `READ ONLY`
//! transaction) and statement inspection before execution (`guard`).
//!
//! - [`auth`]: SCRAM verifiers and sessions per analyst;
//! - `guard`: what may run;
//! - `cancel`: CancelRequests, by backend key;
//! - `session`: DuckDB work on blocking threads, streaming, timeout, row limit;
//! - `handler`: pgwire startup, simple and extended query protocol;
//! - `types`: DuckDB → PostgreSQL types and encodings.

pub mod auth;
mod cancel;
mod catalog;
mod error;
mod guard;
mod handler;
mod metrics;
mod session;
mod types;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::auth::DefaultServerParameterProvider;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::warehouse::Warehouse;
use auth::{Analysts, SessionAuth, Verifier};
use handler::SessionHandlers;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::tokio::tokio_rustls::rustls;
use pgwire::tokio::TlsAcceptor;
use session::{Limits, Session};

/// How the endpoint listens and what it allows.
#[derive(Clone)]
pub struct AnalystConfig {
    /// Address to listen on (`127.0.0.1:5433`).
    pub listen: SocketAddr,
    /// Analyst user name → SCRAM-SHA-256 verifier.
    pub analysts: BTreeMap<String, Verifier>,
    /// A statement running longer is interrupted (SQLSTATE 57014).
    pub statement_timeout: Duration,
    /// A result with more rows fails (SQLSTATE 54000) instead of being cut short.
    pub row_limit: usize,
    /// Connections beyond this are turned away (SQLSTATE 53300).
    pub max_sessions: usize,
    /// An analyst's sessions beyond this are turned away (SQLSTATE 53300, as
    /// PostgreSQL's `CONNECTION LIMIT` of a role).
    pub max_sessions_per_analyst: usize,
    /// Serve TLS with this certificate and key (`sslmode=require`); without,
    /// connections are plain and a client's SSLRequest is declined.
    pub tls: Option<TlsFiles>,
    /// A connection not authenticated within this is closed.
    pub startup_timeout: Duration,
    /// A session that sends nothing for this long is closed (at least the
    /// statement timeout plus a few seconds, so no running statement is cut).
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for AnalystConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalystConfig")
            .field("listen", &self.listen)
            .field("analysts", &self.analysts.keys().collect::<Vec<_>>())
            .field("statement_timeout", &self.statement_timeout)
            .field("row_limit", &self.row_limit)
            .field("max_sessions", &self.max_sessions)
            .field("max_sessions_per_analyst", &self.max_sessions_per_analyst)
            .field("tls", &self.tls)
            .field("startup_timeout", &self.startup_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// The PEM files of the endpoint's TLS certificate (chain, leaf first) and its
/// private key (PKCS#8, PKCS#1 or SEC1).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS, loaded: the acceptor and the certificate that SCRAM channel binding
/// hashes.
struct Tls {
    acceptor: TlsAcceptor,
    cert_pem: Vec<u8>,
}

impl TlsFiles {
    fn load(&self) -> Result<Tls, AnalystError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let fail = |path: &PathBuf, reason: String| AnalystError::Tls {
            path: path.clone(),
            reason,
        };
        let cert_pem = std::fs::read(&self.cert).map_err(|e| fail(&self.cert, e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&self.cert, format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(fail(&self.cert, "holds no PEM certificate".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| fail(&self.key, format!("not a PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(&self.cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| fail(&self.key, format!("does not match the certificate: {e}")))?;
        // PostgreSQL 17 clients may open TLS directly (sslnegotiation=direct).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_pem,
        })
    }
}

/// One connection's SCRAM-SHA-256 exchange against the analysts' verifiers:
/// over plain TCP, and over TLS (offering channel binding, SCRAM-SHA-256-PLUS)
/// when TLS is on. Both hold the connection's one session slot.
fn scram_auth(
    analysts: Arc<Analysts>,
    tls: Option<&Tls>,
) -> pgwire::error::PgWireResult<(ScramAuth, Option<ScramAuth>)> {
    let auth = Arc::new(SessionAuth::new(analysts));
    let plain = ScramAuth::new(auth.clone());
    let secure = match tls {
        Some(tls) => {
            let mut scram = ScramAuth::new(auth);
            scram.configure_certificate(&tls.cert_pem)?;
            Some(scram)
        }
        None => None,
    };
    Ok((plain, secure))
}

/// Errors starting or running the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AnalystError {
    /// The listen address could not be bound (in use, or not allowed).
    #[error("cannot listen for analysts on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// No analyst is configured: nobody could log in.
    #[error("no analysts are configured: add one with `sluice analyst add <name>`")]
    NoAnalysts,
    /// The TLS certificate or key cannot be used.
    #[error("analyst endpoint TLS: {}: {reason}", path.display())]
    Tls { path: PathBuf, reason: String },
}

/// How much longer than the statement timeout the idle timeout is at least.
const IDLE_MARGIN: Duration = Duration::from_secs(5);

/// Binds the configured listen address.
pub async fn bind(config: &AnalystConfig) -> Result<TcpListener, AnalystError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| AnalystError::Bind {
            addr: config.listen,
            source,
        })
}

/// Serves analyst sessions on `listener` until `shutdown`, then closes every
/// session and returns.
pub async fn serve(
    warehouse: Arc<Warehouse>,
    config: AnalystConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AnalystError> {
    if config.analysts.is_empty() {
        return Err(AnalystError::NoAnalysts);
    }
    let tls = config
        .tls
        .as_ref()
        .map(TlsFiles::load)
        .transpose()?
        .map(Arc::new);
    // Fails here, at start, if the certificate cannot serve channel binding.
    if let Some(tls) = &tls {
        scram_auth(Arc::new(Analysts::new(BTreeMap::new(), 0)), Some(tls)).map_err(|e| {
            AnalystError::Tls {
                path: config
                    .tls
                    .as_ref()
                    .map(|t| t.cert.clone())
                    .unwrap_or_default(),
                reason: format!("cannot be used for SCRAM channel binding: {e}"),
            }
        })?;
    }
    let analysts = Arc::new(Analysts::new(
        config.analysts.clone(),
        config.max_sessions_per_analyst,
    ));
    let parameters = Arc::new(server_parameters());
    let limits = Limits {
        statement_timeout: config.statement_timeout,
        row_limit: config.row_limit,
    };
    let permits = Arc::new(Semaphore::new(config.max_sessions));
    let cancels = Arc::new(cancel::Cancels::default());
    let mut sessions = JoinSet::new();
    tracing::info!(addr = ?listener.local_addr().ok(), "analyst SQL endpoint listening");
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(ended) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "analyst session task failed");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "analyst endpoint: accept failed");
                    continue;
                }
            },
        };
        let (warehouse, analysts, tls, parameters, permits, cancels, config) = (
            warehouse.clone(),
            analysts.clone(),
            tls.clone(),
            parameters.clone(),
            permits.clone(),
            cancels.clone(),
            config.clone(),
        );
        let closed = shutdown.child_token();
        sessions.spawn(async move {
            let mut socket = socket;
            // A cancel is answered before anything else: it needs no session.
            match cancel::answer_cancel(&mut socket, &cancels, config.startup_timeout).await {
                cancel::Opening::Cancel => return,
                cancel::Opening::Silent => {
                    tracing::debug!(%peer, "analyst connection closed before a startup message");
                    return;
                }
                cancel::Opening::Session => {}
            }
            let Ok(permit) = permits.try_acquire_owned() else {
                metrics::session_rejected();
                refuse(socket, "53300", "sorry, too many analyst sessions already").await;
                return;
            };
            // Each session's connection gets the catalog's compatibility objects
            // (temporary, so they are its own).
            let conn = warehouse.connect().map_err(|e| e.to_string()).and_then(|conn| {
                catalog::prepare(&conn)
                    .map_err(|e| format!("the catalog's compatibility objects: {e}"))?;
                Ok(conn)
            });
            let conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::error!(error = %e, "analyst endpoint: cannot open a warehouse connection");
                    refuse(socket, "58000", "the warehouse is not available").await;
                    return;
                }
            };
            let scram = match scram_auth(analysts, tls.as_deref()) {
                Ok(scram) => scram,
                Err(e) => {
                    tracing::error!(error = %e, "analyst endpoint: SCRAM set-up failed");
                    refuse(socket, "58000", "the endpoint cannot authenticate").await;
                    return;
                }
            };
            let tls = tls.map(|tls| tls.acceptor.clone());
            serve_session(socket, peer, conn, permit, closed, scram, tls, parameters, cancels, limits, &config)
                .await;
        });
    }
    while let Some(ended) = sessions.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "analyst session task failed");
        }
    }
    Ok(())
}

/// One analyst session, from startup to its end: closed at shutdown, by the
/// session itself (a client that stopped reading a result), when it does not
/// authenticate within the startup timeout, or when idle too long.
#[allow(clippy::too_many_arguments)]
async fn serve_session(
    socket: TcpStream,
    peer: SocketAddr,
    conn: duckdb::Connection,
    permit: tokio::sync::OwnedSemaphorePermit,
    closed: CancellationToken,
    scram: (ScramAuth, Option<ScramAuth>),
    tls: Option<TlsAcceptor>,
    parameters: Arc<DefaultServerParameterProvider>,
    cancels: Arc<cancel::Cancels>,
    limits: Limits,
    config: &AnalystConfig,
) {
    let _permit = permit;
    let cancel = Arc::new(tokio::sync::Notify::new());
    let authenticated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handlers = SessionHandlers::new(
        Session::new(conn, limits, closed.clone(), cancel.clone()),
        scram,
        parameters,
        cancel::SessionKey::new(cancels.clone(), cancel, authenticated.clone()),
        cancels,
    );
    let session = handlers.handler.session.clone();
    let (startup_timeout, idle_timeout) = (
        config.startup_timeout,
        config
            .idle_timeout
            .max(config.statement_timeout + IDLE_MARGIN),
    );
    // Ends when the session must be closed: not authenticated in time, or idle.
    let expiry = async move {
        tokio::time::sleep(startup_timeout).await;
        if !authenticated.load(std::sync::atomic::Ordering::SeqCst) {
            return "no authentication within the startup timeout";
        }
        loop {
            let idle = session.idle_for();
            if idle >= idle_timeout {
                return "idle longer than the idle timeout";
            }
            tokio::time::sleep(idle_timeout - idle).await;
        }
    };
    metrics::session_opened();
    tracing::debug!(%peer, "analyst session opened");
    tokio::select! {
        outcome = pgwire::tokio::process_socket(socket, tls, handlers) => {
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "analyst session ended with an error");
            }
        }
        _ = closed.cancelled() => {}
        why = expiry => tracing::debug!(%peer, why, "analyst session closed"),
    }
    metrics::session_closed();
}

/// What the endpoint reports at startup: a PostgreSQL 16 dialect, read-only,
/// not a superuser, UTC.
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = format!(
        "{} (Sluice analyst endpoint {}, DuckDB)",
        catalog::POSTGRES_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    parameters.is_superuser = false;
    parameters.default_transaction_read_only = true;
    parameters.search_path = "main".to_owned();
    parameters.time_zone = "UTC".to_owned();
    parameters
}

/// Answers a connection we will not serve with a FATAL `ErrorResponse` (what
/// PostgreSQL sends past `max_connections`) and closes it.
async fn refuse(mut socket: TcpStream, code: &str, message: &str) {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let _ = socket.write_all(&frame).await;
    let _ = socket.shutdown().await;
}
