//! `sluice sql`: a terminal client of the analyst SQL endpoint.
//!
//! One shot (`-c "<query>"`) or an interactive loop over stdin: statements end
//! at `;`, `\q` quits. Results print as aligned tables like psql's; errors
//! print with their SQLSTATE. It speaks the simple query protocol, so every
//! value arrives as the server's text.

use std::io::Write as _;

use tokio_postgres::{NoTls, SimpleQueryMessage};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Errors of `sluice sql`.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The endpoint could not be reached or refused the login.
    #[error("cannot connect to the analyst endpoint at {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: tokio_postgres::Error,
    },
    /// The one-shot query failed (already printed with its SQLSTATE).
    #[error("the query failed: {message} (SQLSTATE {code})")]
    Query { code: String, message: String },
    /// Reading stdin or writing stdout failed.
    #[error("terminal I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One result of a query string: column names and text values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResultTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Connects, then runs `command` once, or reads statements from stdin until
/// EOF or `\q`. A failed one-shot query is an error (non-zero exit); in the
/// interactive loop errors are printed and the loop goes on.
pub async fn run(options: &ConnectOptions, command: Option<String>) -> Result<(), ShellError> {
    let session = Session::connect(options, "sluice sql").await?;
    let outcome = match command {
        Some(sql) => execute(&session.client, &sql).await,
        None => interactive(&session.client).await,
    };
    session.close().await;
    outcome
}

/// A session on the analyst endpoint for programs (`sluice verify`): queries
/// return their results instead of printing them.
pub struct Session {
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Session {
    /// Connects and logs in; `application_name` names the program to the endpoint.
    pub async fn connect(
        options: &ConnectOptions,
        application_name: &str,
    ) -> Result<Session, ShellError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&options.host)
            .port(options.port)
            .user(&options.user)
            .password(&options.password)
            .dbname(&options.database)
            .application_name(application_name);
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|source| ShellError::Connect {
                    host: options.host.clone(),
                    port: options.port,
                    source,
                })?;
        let driver = tokio::spawn(connection);
        Ok(Session { client, driver })
    }

    /// Runs one statement; its result set (empty for a statement without rows).
    pub async fn query(&self, sql: &str) -> Result<ResultTable, ShellError> {
        match self.client.simple_query(sql).await {
            Ok(messages) => Ok(tables(messages).into_iter().next().unwrap_or_default()),
            Err(e) => {
                let (code, message) = match e.as_db_error() {
                    Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
                    None => ("08006".to_owned(), e.to_string()),
                };
                Err(ShellError::Query { code, message })
            }
        }
    }

    /// Ends the session.
    pub async fn close(self) {
        drop(self.client);
        if let Ok(Err(e)) = self.driver.await {
            tracing::debug!(error = %e, "analyst endpoint connection ended with an error");
        }
    }
}

async fn interactive(client: &tokio_postgres::Client) -> Result<(), ShellError> {
    use std::io::IsTerminal;
    // Prompts only for a person at a terminal; piped input runs quietly.
    let prompt = std::io::stdin().is_terminal();
    let mut buffer = String::new();
    loop {
        if prompt {
            let mut out = std::io::stdout().lock();
            let text = if buffer.is_empty() {
                "sluice=> "
            } else {
                "sluice-> "
            };
            write!(out, "{text}")?;
            out.flush()?;
        }
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| (n, line))
        })
        .await
        .map_err(std::io::Error::other)??;
        let (read, line) = line;
        if read == 0 {
            // End of input: a last statement without its `;` still runs.
            if !buffer.trim().is_empty() {
                let _ = execute(client, &buffer).await;
            }
            return Ok(());
        }
        if buffer.is_empty() && line.trim() == "\\q" {
            return Ok(());
        }
        buffer.push_str(&line);
        if buffer.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut buffer);
            // Errors are printed by `execute`; the loop goes on.
            let _ = execute(client, &sql).await;
        }
    }
}

/// Runs one query string and prints its results or its error.
async fn execute(client: &tokio_postgres::Client, sql: &str) -> Result<(), ShellError> {
    match client.simple_query(sql).await {
        Ok(messages) => {
            let mut out = std::io::stdout().lock();
            for table in tables(messages) {
                writeln!(out, "{}", format_table(&table))?;
            }
            Ok(())
        }
        Err(e) => {
            let (code, message) = match e.as_db_error() {
                Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
                None => ("08006".to_owned(), e.to_string()),
            };
            eprintln!("ERROR:  {message} (SQLSTATE {code})");
            Err(ShellError::Query { code, message })
        }
    }
}

/// Groups simple-query messages into one table per result set.
fn tables(messages: Vec<SimpleQueryMessage>) -> Vec<ResultTable> {
    let mut tables = Vec::new();
    let mut current: Option<ResultTable> = None;
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                current = Some(ResultTable {
                    columns: columns.iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                });
            }
            SimpleQueryMessage::Row(row) => {
                let table = current.get_or_insert_with(|| ResultTable {
                    columns: row.columns().iter().map(|c| c.name().to_owned()).collect(),
                    rows: Vec::new(),
                });
                table.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(_) => tables.extend(current.take()),
            _ => {}
        }
    }
    tables.extend(current);
    tables
}

/// Formats a result like psql's aligned output: centred header, separator,
/// rows, and the row count.
pub fn format_table(table: &ResultTable) -> String {
    let width = |i: usize| {
        table
            .rows
            .iter()
            .map(|row| {
                row.get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_default()
                    .chars()
                    .count()
            })
            .chain([table.columns[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..table.columns.len()).map(width).collect();
    let mut out = String::new();
    let header: Vec<String> = table
        .columns
        .iter()
        .zip(&widths)
        .map(|(name, &w)| format!(" {name:^w$} "))
        .collect();
    out.push_str(header.join("|").trim_end());
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &table.rows {
        let cells: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let value = row.get(i).cloned().flatten().unwrap_or_default();
                format!(" {value:<w$} ")
            })
            .collect();
        out.push_str(cells.join("|").trim_end());
        out.push('\n');
    }
    let n = table.rows.len();
    out.push_str(&format!("({n} row{})", if n == 1 { "" } else { "s" }));
    out.push('\n');
    out
}
