//! `sluice backup`, `sluice restore` and `sluice reappend`: each component's
//! database on its own, with `pg_dump` and `pg_restore`.
//!
//! A restore replaces one component's database while the others keep running:
//! the database is dropped (its sessions ended) and provisioned again, its
//! connection limit is 0 (only the administrator gets in) while the dump is
//! restored as its owner, in one transaction; then the limit is lifted. A component that consumes (a projection, a
//! service's reactor) gets a new read-model generation, so a running consumer
//! resumes from the restored positions and catches up by itself.
//!
//! A write service's store restored from an older backup is behind its topic: the
//! topic holds events the store no longer does. Its relay notices and publishes
//! nothing until that is mended, since new appends would reuse those events'
//! stream versions. `sluice reappend <service>` (run by `restore` unless
//! `--no-reappend`) copies every event the topic holds and the store lacks back
//! into the store, as it was (event id, stream, version, type, payload decoded
//! from its Avro, metadata, time), without outbox rows: they are published already.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use sluice_platform::provision::Plan;
use sluice_platform::registry::{Component, ComponentKind, Registry};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::verify::read_topic;

fn database_component<'a>(registry: &'a Registry, name: &str) -> anyhow::Result<&'a Component> {
    let component = registry.component(name)?;
    if component.database.is_none() {
        bail!(
            "`{name}` has no PostgreSQL database to back up (the warehouse is a file: copy {} while analytics is stopped)",
            registry
                .warehouse_path()
                .map_or_else(|| "it".to_owned(), |p| p.display().to_string())
        );
    }
    Ok(component)
}

/// `sluice backup <component> [--output FILE]`: `pg_dump --format=custom` of the
/// component's database, written to a temporary file and renamed into place when
/// complete. Returns the file.
pub fn backup(registry: &Registry, name: &str, output: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let component = database_component(registry, name)?;
    let url = registry
        .owner_database_url(component)
        .ok_or_else(|| anyhow!("{name} has no database"))?;
    let file = output.unwrap_or_else(|| {
        registry.platform.data_dir.join("backups").join(format!(
            "{name}-{}.dump",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ))
    });
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = file.with_extension("dump.partial");
    run(client("pg_dump", &url)?
        .arg("--format=custom")
        .arg("--file")
        .arg(&partial))
    .with_context(|| format!("backing up {name}"))?;
    std::fs::rename(&partial, &file)
        .with_context(|| format!("moving {} into place", partial.display()))?;
    Ok(file)
}

/// `sluice restore <component> <file>`; see the module docs.
pub async fn restore(
    registry: &Registry,
    name: &str,
    file: &Path,
    reappend_events: bool,
) -> anyhow::Result<()> {
    let component = database_component(registry, name)?;
    let Some(db) = component.database.as_ref() else {
        bail!("`{name}` has no database to restore");
    };
    // Bad input changes nothing: the file must be a custom-format dump of this very
    // database before anything is dropped.
    let listing = run(Command::new("pg_restore").arg("--list").arg(file))
        .with_context(|| format!("{} is not a backup pg_restore can read", file.display()))?;
    let dumped = listing
        .lines()
        .find_map(|l| l.trim().strip_prefix(";     dbname: "))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if dumped != db.name {
        bail!(
            "{} is a backup of the database `{dumped}`, not of {name}'s `{}`; nothing was changed",
            file.display(),
            db.name
        );
    }

    let admin_url = &registry.platform.admin_database_url;
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting as the administrator (SLUICE_ADMIN_DATABASE_URL)")?;
    eprintln!("restore: dropping {} (its sessions are ended)", db.name);
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
        .execute(&mut admin)
        .await?;
    Plan::for_component(component, db)
        .execute(admin_url)
        .await
        .with_context(|| format!("provisioning {} again", db.name))?;
    // Nobody but the administrator (a superuser, exempt from the limit) connects
    // until the restore is complete; whoever got in since the drop is ended.
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} WITH CONNECTION LIMIT 0",
        db.name
    ))
    .execute(&mut admin)
    .await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
          WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await?;
    let target = PgConnectOptions::from_str(admin_url)?.database(&db.name);
    eprintln!("restore: restoring {} from {}", db.name, file.display());
    let restored = restore_into(&with_database(admin_url, &db.name)?, &db.owner_role, file);
    let mut conn = target.connect().await?;
    if restored.is_ok() {
        // A running consumer of this database resumes from the restored positions.
        let has_generation: bool =
            sqlx::query_scalar("SELECT to_regclass('public.consumer_generation') IS NOT NULL")
                .fetch_one(&mut conn)
                .await?;
        if has_generation {
            sqlx::query("UPDATE consumer_generation SET generation = gen_random_uuid()")
                .execute(&mut conn)
                .await?;
        }
    }
    let reappended = match (&restored, reappend_events, component.kind) {
        (Ok(()), true, ComponentKind::Service) => {
            Some(reappend_on(registry, component, &mut conn).await)
        }
        _ => None,
    };
    let _ = conn.close().await;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} WITH CONNECTION LIMIT -1",
        db.name
    ))
    .execute(&mut admin)
    .await?;
    restored?;
    match reappended {
        Some(Ok(n)) => eprintln!("restore: {n} events copied back from the topic"),
        Some(Err(e)) => return Err(e.context("the store was restored, but re-appending from the topic failed; run `sluice reappend` once fixed")),
        None if component.kind == ComponentKind::Service => eprintln!(
            "restore: events the topic holds and the store lacks were not copied back (--no-reappend); its relay publishes nothing until `sluice reappend {name}` has run"
        ),
        None => {}
    }
    println!("restored {name} ({}) from {}", db.name, file.display());
    Ok(())
}

fn restore_into(target_url: &str, owner: &str, file: &Path) -> anyhow::Result<()> {
    run(client("pg_restore", target_url)?
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg("--no-owner")
        .arg("--role")
        .arg(owner)
        .arg(file))
    .map(|_| ())
}

/// `url` (`postgres://user:password@host:port/db?options`) naming `database`
/// instead.
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let authority = url
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| anyhow!("the administrator URL is not a postgres:// URL"))?;
    let path = url[authority..]
        .find('/')
        .map_or(url.len(), |i| authority + i);
    let query = url[path..].find('?').map_or("", |i| &url[path + i..]);
    Ok(format!("{}/{database}{query}", &url[..path]))
}

/// `sluice reappend <service>`: copies the events of the service's topics that its
/// store lacks back into it. Returns how many.
pub async fn reappend(registry: &Registry, name: &str) -> anyhow::Result<usize> {
    let component = registry.component(name)?;
    if component.kind != ComponentKind::Service {
        bail!("`{name}` is not a write service: only a store is re-appended from its topic");
    }
    let url = registry
        .owner_database_url(component)
        .ok_or_else(|| anyhow!("{name} has no database"))?;
    let mut conn = PgConnection::connect(&url)
        .await
        .with_context(|| format!("connecting to the store of {name}"))?;
    reappend_on(registry, component, &mut conn).await
}

async fn reappend_on(
    registry: &Registry,
    component: &Component,
    conn: &mut PgConnection,
) -> anyhow::Result<usize> {
    let service = crate::components::write_service(&component.name)
        .ok_or_else(|| anyhow!("this build has no service `{}`", component.name))?;
    let catalog = service.catalog()?;
    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let mut tx = conn.begin().await?;
    let mut copied = 0;
    for topic in &component.produces {
        let physical = registry.topic_names().physical(topic);
        let read = read_topic(&registry.platform.kafka_brokers, &physical)
            .await
            .with_context(|| format!("reading {physical}"))?;
        let mut seen = HashSet::new();
        // Per stream in version order (a stream lives on one partition).
        let mut missing: BTreeMap<(String, i64), &crate::verify::Record> = BTreeMap::new();
        for r in &read.records {
            let (Some(id), Some(version)) = (r.event_id, r.stream_version) else {
                continue;
            };
            if !stored.contains(&id) && seen.insert(id) {
                missing.insert((r.key.clone(), version), r);
            }
        }
        for ((stream, version), r) in missing {
            let header = |name: &str| r.headers.get(name).cloned();
            let decoded = catalog.decode_single_object(&r.payload).map_err(|e| {
                anyhow!(
                    "{physical} partition {} offset {}: cannot decode the event: {e}",
                    r.partition,
                    r.offset
                )
            })?;
            let metadata = sluice_platform::store::Metadata {
                correlation_id: header("correlation_id").and_then(|v| v.parse().ok()),
                causation_id: header("causation_id").and_then(|v| v.parse().ok()),
                traceparent: header("traceparent"),
                actor: header("actor"),
            };
            let recorded_at = header("recorded_at")
                .and_then(|v| chrono::DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(chrono::Utc::now);
            let stream_type = header("stream_type")
                .ok_or_else(|| anyhow!("{physical} offset {}: no stream_type header", r.offset))?;
            sqlx::query(
                "INSERT INTO events (event_id, stream_id, stream_type, stream_version, event_type, \
                                     schema_version, payload, metadata, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(r.event_id)
            .bind(&stream)
            .bind(&stream_type)
            .bind(version)
            .bind(&decoded.event_type)
            .bind(decoded.schema_version)
            .bind(&decoded.payload)
            .bind(serde_json::to_value(&metadata)?)
            .bind(recorded_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e.as_database_error().and_then(|d| d.constraint()) {
                Some("events_stream_version_key") => anyhow!(
                    "stream {stream} version {version} is event {} on {physical}, but the store holds another event at that version (appended after the restore); nothing was copied",
                    r.event_id.unwrap_or_default()
                ),
                _ => anyhow::Error::from(e),
            })?;
            copied += 1;
        }
    }
    tx.commit().await?;
    Ok(copied)
}

/// A PostgreSQL client program connecting to `url`. The password goes in the
/// program's environment (`PGPASSWORD`), not its arguments, which every user of
/// the machine can read with `ps`.
fn client(program: &str, url: &str) -> anyhow::Result<Command> {
    let mut parsed = reqwest::Url::parse(url)
        .map_err(|e| anyhow!("the database URL of {program} is not a URL: {e}"))?;
    let password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let mut command = Command::new(program);
    if let Some(password) = password {
        parsed
            .set_password(None)
            .map_err(|()| anyhow!("the database URL of {program} cannot hold a password"))?;
        command.env("PGPASSWORD", password);
    }
    command.arg("--dbname").arg(parsed.as_str());
    Ok(command)
}

/// Runs a PostgreSQL client program; its stdout, or its stderr as the error.
fn run(command: &mut Command) -> anyhow::Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| {
        anyhow!("cannot run {program}: {e} (it comes with PostgreSQL's client programs: apt-get install postgresql-client)")
    })?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{client, with_database};

    #[test]
    fn a_client_program_gets_the_password_in_its_environment_not_its_arguments() {
        // Arguments are visible to every user of the machine (`ps`); the
        // environment only to the user and root.
        let command = client(
            "pg_dump",
            "postgres://owner:s3cr%40t@127.0.0.1:5432/db?sslmode=prefer",
        )
        .unwrap();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.iter().all(|a| !a.contains("s3cr")), "{args:?}");
        assert_eq!(
            args,
            [
                "--dbname",
                "postgres://owner@127.0.0.1:5432/db?sslmode=prefer"
            ]
        );
        let password = command
            .get_envs()
            .find(|(k, _)| *k == "PGPASSWORD")
            .and_then(|(_, v)| v)
            .map(|v| v.to_string_lossy().into_owned());
        assert_eq!(password.as_deref(), Some("s3cr@t"));
    }

    #[test]
    fn a_url_names_another_database_keeping_its_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x").unwrap(),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h", "x").unwrap(),
            "postgres://h/x"
        );
        assert!(with_database("h:5432", "x").is_err());
    }
}
