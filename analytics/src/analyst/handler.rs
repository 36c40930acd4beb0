//! The pgwire side of a session: startup with SCRAM-SHA-256 authentication,
//! the simple query protocol (several statements per query string, each
//! streamed in turn) and the extended protocol (Parse/Bind/Describe/Execute,
//! parameters bound into DuckDB prepared statements, see [`params`]).

mod params;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use duckdb::types::Value;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::DefaultServerParameterProvider;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler,
    SimpleQueryHandler,
};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;

use super::cancel::{CancelSessions, Cancels, SessionKey};
use super::error::SqlError;
use super::guard::Checked;
use super::session::{Column, Described, Session};
use super::types::encode_field;
use params::bind_parameters;

/// A statement checked and described at Parse time.
#[derive(Debug)]
pub(crate) struct Prepared {
    checked: Checked,
    described: Described,
}

/// Parses (checks and describes) extended-protocol statements on the
/// session's connection.
pub(crate) struct Parser {
    session: Arc<Session>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.session.touch();
        let mut checked = self.session.check(sql).await?;
        if checked.len() > 1 {
            return Err(SqlError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement".to_owned(),
            )
            .into());
        }
        let Some(checked) = checked.pop() else {
            return Ok(None);
        };
        let described = match &checked {
            Checked::Query {
                sql,
                explain,
                casts,
            } => {
                let mut described = self.session.describe(sql.clone(), *explain).await?;
                for (index, ty) in casts {
                    if let Some(param) = index
                        .checked_sub(1)
                        .and_then(|i| described.params.get_mut(i))
                    {
                        *param = ty.clone();
                    }
                }
                described
            }
            Checked::NoOp { .. } => Described::default(),
            Checked::Setting { name, .. } => Described {
                params: Vec::new(),
                columns: vec![Column {
                    name: name.clone(),
                    ty: Type::TEXT,
                    typmod: -1,
                }],
            },
        };
        Ok(Some(Arc::new(Prepared { checked, described })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(stmt.described.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.cloned().unwrap_or_default();
        Ok(fields(&stmt.described.columns, &format))
    }
}

fn fields(columns: &[Column], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let field_format = match format {
                Format::Individual(codes) if i >= codes.len() => Format::UnifiedText.format_for(i),
                format => format.format_for(i),
            };
            FieldInfo::new(c.name.clone(), None, None, c.ty.clone(), field_format)
                .with_type_modifier(c.typmod)
        })
        .collect()
}

/// One session's query handling.
pub(crate) struct SessionHandler {
    pub(crate) session: Arc<Session>,
    parser: Arc<Parser>,
}

impl SessionHandler {
    pub(crate) fn new(session: Session) -> Self {
        let session = Arc::new(session);
        SessionHandler {
            parser: Arc::new(Parser {
                session: session.clone(),
            }),
            session,
        }
    }

    /// The response to one checked statement.
    async fn execute(
        &self,
        checked: &Checked,
        params: Vec<Value>,
        format: Format,
    ) -> Result<Response, SqlError> {
        match checked {
            Checked::NoOp { tag } => Ok(Response::Execution(Tag::new(tag))),
            Checked::Setting { name, value } => {
                let schema = Arc::new(vec![FieldInfo::new(
                    name.clone(),
                    None,
                    None,
                    Type::TEXT,
                    format.format_for(0),
                )]);
                let mut buf = BytesMut::new();
                encode_field(
                    &mut buf,
                    &Value::Text((*value).to_owned()),
                    &Type::TEXT,
                    false,
                );
                let row = DataRow::new(buf, 1);
                Ok(Response::Query(QueryResponse::new(
                    schema,
                    stream::iter([Ok(row)]),
                )))
            }
            Checked::Query { sql, explain, .. } => self
                .session
                .run(sql.clone(), *explain, params, format)
                .await
                .map(Response::Query),
        }
    }

    /// A simple-protocol query string: every statement checked first, then
    /// each run and streamed in turn; the first error ends the string.
    async fn simple_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.session.check(sql).await?;
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        for checked in &statements {
            match self
                .execute(checked, Vec::new(), Format::UnifiedText)
                .await?
            {
                Response::Query(results) => send_query_response(client, results, true).await?,
                Response::Execution(tag) => send_execution_response(client, tag).await?,
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SimpleQueryHandler for SessionHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        self.session.touch();
        let outcome = self.simple_query(client, &query.query).await;
        self.session.touch();
        client.set_state(PgWireConnectionState::ReadyForQuery);
        match outcome {
            Ok(()) => {}
            Err(PgWireError::IoError(e)) => return Err(PgWireError::IoError(e)),
            Err(e) => {
                let info: ErrorInfo = e.into();
                client
                    .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
            }
        }
        // Statements never leave a transaction open: always idle.
        client.set_transaction_status(TransactionStatus::Idle);
        send_ready_for_query(client, TransactionStatus::Idle).await
    }

    /// Only reached through pgwire's default `on_query`, which this handler
    /// overrides; kept correct for a single statement.
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.session.check(query).await?;
        if statements.len() > 1 {
            return Err(SqlError::new("0A000", "send one statement at a time".to_owned()).into());
        }
        let mut responses = Vec::new();
        for checked in &statements {
            responses.push(
                self.execute(checked, Vec::new(), Format::UnifiedText)
                    .await?,
            );
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for SessionHandler {
    type Statement = Arc<Prepared>;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.touch();
        let prepared = &portal.statement.statement;
        let params = bind_parameters(portal)?;
        Ok(self
            .execute(
                &prepared.checked,
                params,
                portal.result_column_format.clone(),
            )
            .await?)
    }
}

/// The handlers of one connection.
pub(crate) struct SessionHandlers {
    pub(crate) handler: Arc<SessionHandler>,
    startup: Arc<Startup>,
    cancel: Arc<CancelSessions>,
}

impl SessionHandlers {
    /// `key`: the backend key the session hands out at startup, registered for
    /// CancelRequests; `cancels`: where a CancelRequest on this connection looks;
    /// `scram`: the SCRAM exchange over a plain connection and, when TLS is on,
    /// the one over TLS (which offers channel binding, SCRAM-SHA-256-PLUS).
    pub(crate) fn new(
        session: Session,
        scram: (ScramAuth, Option<ScramAuth>),
        parameters: Arc<DefaultServerParameterProvider>,
        key: SessionKey,
        cancels: Arc<Cancels>,
    ) -> Self {
        let key: Arc<SessionKey> = Arc::new(key);
        let handler = |scram: ScramAuth| {
            SASLAuthStartupHandler::new(parameters.clone())
                .with_scram(scram)
                .with_pid_secret_key_generator(key.clone())
        };
        SessionHandlers {
            handler: Arc::new(SessionHandler::new(session)),
            startup: Arc::new(Startup {
                plain: handler(scram.0),
                secure: scram.1.map(handler),
            }),
            cancel: Arc::new(CancelSessions(cancels)),
        }
    }
}

/// Startup: SCRAM-SHA-256, with channel binding offered only where it can be
/// used, on a TLS connection (libpq refuses a -PLUS offer over plain TCP).
pub(crate) struct Startup {
    plain: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    secure: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
}

#[async_trait]
impl pgwire::api::auth::StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match &self.secure {
            Some(secure) if client.is_secure() => secure.on_startup(client, message).await,
            _ => self.plain.on_startup(client, message).await,
        };
        // SCRAM's own user name (`n=`) is empty from libpq, which names the user
        // in the startup message: report that one, as PostgreSQL does.
        outcome.map_err(|e| match e {
            PgWireError::InvalidPassword(_) => PgWireError::InvalidPassword(
                client
                    .metadata()
                    .get(pgwire::api::METADATA_USER)
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => other,
        })
    }
}

impl PgWireServerHandlers for SessionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}
