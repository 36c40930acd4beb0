//! The pgwire side of a session: startup with SCRAM-SHA-256 authentication,
//! the simple query protocol (several statements per query string, each
//! streamed in turn) and the extended protocol (Parse/Bind/Describe/Execute,
//! parameters bound into DuckDB prepared statements).

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use duckdb::types::{TimeUnit, Value};
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

/// Days and microseconds between the Unix and the PostgreSQL epochs.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 10_957 * 86_400_000_000;

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

/// Converts a portal's parameters into DuckDB values: text-format values are
/// bound as VARCHAR and cast by DuckDB to the parameter's type; binary ones
/// are decoded from PostgreSQL's binary formats.
fn bind_parameters(portal: &Portal<Arc<Prepared>>) -> Result<Vec<Value>, SqlError> {
    let described = &portal.statement.statement.described.params;
    (0..portal.parameter_len())
        .map(|i| {
            let ty = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| described.get(i).cloned())
                .unwrap_or(Type::TEXT);
            // What the statement takes there decides how PostgreSQL's text
            // forms of a bytea or an array are read, whatever the client declared.
            let takes = described.get(i).filter(|t| {
                **t == Type::BYTEA || matches!(t.kind(), tokio_postgres::types::Kind::Array(_))
            });
            match &portal.parameters[i] {
                None => Ok(Value::Null),
                // Bytes that are not text, sent for a parameter typed as text
                // or not at all (node-postgres sends a Buffer so): a blob.
                Some(bytes)
                    if portal.parameter_format.is_binary(i)
                        && matches!(ty, Type::TEXT | Type::UNKNOWN)
                        && std::str::from_utf8(bytes).is_err() =>
                {
                    Ok(Value::Blob(bytes.to_vec()))
                }
                Some(bytes) if portal.parameter_format.is_binary(i) => decode_binary(bytes, &ty),
                Some(bytes) => {
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        SqlError::new("22021", format!("parameter ${} is not UTF-8", i + 1))
                    })?;
                    decode_text(text, takes.unwrap_or(&ty), i)
                }
            }
        })
        .collect()
}

/// A text-format parameter: bound as VARCHAR for DuckDB to cast, except where
/// PostgreSQL's text form is not DuckDB's: `bytea` (`\x` hex or escapes) and
/// arrays (`{a,"b c",NULL}`, rewritten as DuckDB's list literal).
fn decode_text(text: String, ty: &Type, i: usize) -> Result<Value, SqlError> {
    let bad = |what: &str| {
        SqlError::new(
            "22P02",
            format!("parameter ${}: invalid input syntax for type {what}", i + 1),
        )
    };
    if *ty == Type::BYTEA {
        return decode_bytea(&text)
            .map(Value::Blob)
            .ok_or_else(|| bad("bytea"));
    }
    if let tokio_postgres::types::Kind::Array(_) = ty.kind() {
        let items = parse_array(&text).ok_or_else(|| bad(ty.name()))?;
        return Ok(Value::Text(duckdb_list_literal(
            items.iter().map(|item| item.as_deref()),
        )));
    }
    Ok(Value::Text(text))
}

/// PostgreSQL's bytea input: `\x` and hex digits, or the escape format
/// (`\\` for a backslash, `\ooo` octal, other bytes as they are).
fn decode_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(octal, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// The elements of a one-dimensional PostgreSQL array literal (`None` for
/// NULL), or `None` when it is not one.
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.trim().is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '{' | '}' | '"') {
                    return None; // nested arrays are not taken
                }
                item.push(c);
                chars.next();
            }
            item = item.trim_end().to_owned();
        }
        items.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Some(items),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// DuckDB's list literal, as its VARCHAR → LIST cast reads it: each element
/// in single quotes with `'` and `\` escaped, NULL bare.
fn duckdb_list_literal<'a>(items: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut out = String::from("[");
    for (n, item) in items.enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        match item {
            None => out.push_str("NULL"),
            Some(item) => {
                out.push('\'');
                for c in item.chars() {
                    if c == '\'' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('\'');
            }
        }
    }
    out.push(']');
    out
}

/// A one-dimensional binary array of a scalar type, as DuckDB's list literal
/// of the elements' text.
fn decode_binary_array(bytes: &[u8], ty: &Type) -> Option<Value> {
    let tokio_postgres::types::Kind::Array(element) = ty.kind() else {
        return None;
    };
    let mut b = bytes;
    if b.len() < 12 {
        return None;
    }
    let (dimensions, _has_null, _oid) = (b.get_i32(), b.get_i32(), b.get_u32());
    let count = match dimensions {
        0 => 0,
        1 if b.len() >= 8 => {
            let (len, _lower) = (b.get_i32(), b.get_i32());
            usize::try_from(len).ok()?
        }
        _ => return None,
    };
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        if b.len() < 4 {
            return None;
        }
        let len = b.get_i32();
        if len < 0 {
            items.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return None;
        }
        let value = decode_binary(&b[..len], element).ok()?;
        b.advance(len);
        items.push(Some(match value {
            Value::Text(text) => text,
            other => super::types::render(&other, element),
        }));
    }
    if !b.is_empty() {
        return None;
    }
    Some(Value::Text(duckdb_list_literal(
        items.iter().map(|item| item.as_deref()),
    )))
}

fn decode_binary(bytes: &[u8], ty: &Type) -> Result<Value, SqlError> {
    let bad = || {
        SqlError::new(
            "22P03",
            format!("invalid binary value for a parameter of type {}", ty.name()),
        )
    };
    let mut b = bytes;
    let need = |n: usize| if bytes.len() == n { Ok(()) } else { Err(bad()) };
    Ok(match *ty {
        Type::BOOL => {
            need(1)?;
            Value::Boolean(b[0] != 0)
        }
        Type::INT2 => {
            need(2)?;
            Value::SmallInt(b.get_i16())
        }
        Type::INT4 => {
            need(4)?;
            Value::Int(b.get_i32())
        }
        Type::INT8 => {
            need(8)?;
            Value::BigInt(b.get_i64())
        }
        Type::FLOAT4 => {
            need(4)?;
            Value::Float(b.get_f32())
        }
        Type::FLOAT8 => {
            need(8)?;
            Value::Double(b.get_f64())
        }
        // PostgreSQL sends ±infinity as the type's extreme values; DuckDB reads
        // them from text. A finite value out of DuckDB's range is refused.
        Type::DATE => {
            need(4)?;
            match b.get_i32() {
                i32::MAX => Value::Text("infinity".to_owned()),
                i32::MIN => Value::Text("-infinity".to_owned()),
                days => Value::Date32(days.checked_add(PG_EPOCH_DAYS).ok_or_else(bad)?),
            }
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            need(8)?;
            match b.get_i64() {
                i64::MAX => Value::Text("infinity".to_owned()),
                i64::MIN => Value::Text("-infinity".to_owned()),
                micros => Value::Timestamp(
                    TimeUnit::Microsecond,
                    micros.checked_add(PG_EPOCH_MICROS).ok_or_else(bad)?,
                ),
            }
        }
        Type::UUID => Value::Text(
            uuid::Uuid::from_slice(bytes)
                .map_err(|_| bad())?
                .to_string(),
        ),
        Type::BYTEA => Value::Blob(bytes.to_vec()),
        Type::NUMERIC => Value::Text(decode_numeric(bytes).ok_or_else(bad)?),
        Type::JSONB => Value::Text(
            String::from_utf8(bytes.get(1..).unwrap_or_default().to_vec()).map_err(|_| bad())?,
        ),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| bad())?)
        }
        // Microseconds, days, months; DuckDB reads the three parts from text.
        Type::INTERVAL => {
            need(16)?;
            let (micros, days, months) = (b.get_i64(), b.get_i32(), b.get_i32());
            Value::Text(format!("{months} months {days} days {micros} microseconds"))
        }
        _ if matches!(ty.kind(), tokio_postgres::types::Kind::Array(_)) => {
            decode_binary_array(bytes, ty).ok_or_else(bad)?
        }
        _ => {
            return Err(SqlError::new(
                "0A000",
                format!(
                    "binary parameters of type {} are not supported; send the value as text",
                    ty.name()
                ),
            ))
        }
    })
}

/// PostgreSQL's binary `numeric` to a decimal string.
fn decode_numeric(mut b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let ndigits = b.get_i16() as usize;
    let weight = i32::from(b.get_i16());
    let sign = b.get_u16();
    let dscale = b.get_u16() as usize;
    if sign == 0xC000 {
        return Some("NaN".to_owned());
    }
    if b.len() != ndigits * 2 {
        return None;
    }
    let digits: Vec<i16> = (0..ndigits).map(|_| b.get_i16()).collect();
    let mut int_part = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac = String::new();
    let mut position = weight + 1;
    while frac.len() < dscale {
        let d = if position < 0 {
            0
        } else {
            digits.get(position as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        position += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Some(if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    })
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

#[cfg(test)]
mod tests {
    use super::decode_numeric;

    #[test]
    fn binary_numeric_decodes() {
        let bytes = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(decode_numeric(&bytes).as_deref(), Some("12345.678"));
        let small = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0, 100];
        assert_eq!(decode_numeric(&small).as_deref(), Some("-0.01"));
    }
}
