//! Storage isolation: every component's roles reach only its own database, and
//! nobody else (PUBLIC) reaches any. Provisioned by the same code as
//! `sluice db setup`, with test-unique names.
//!
//! Every connection here gives the role's own password, so under password
//! authentication (Debian's default `scram-sha-256` on TCP) and under trust alike a
//! refusal comes from the `CONNECT` privilege, and that is what these tests prove.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests report failures by panicking

mod support;

use std::path::Path;

use sluice_platform::provision;
use sluice_platform::registry::Registry;
use sluice_platform::testing::{
    admin_url, drop_registry_databases, isolated_registry, TestDatabase,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;

fn registry() -> Registry {
    Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml")).unwrap()
}

fn options(role: &str, password: &str, database: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&admin_url())
        .unwrap()
        .username(role)
        .password(password)
        .database(database)
}

/// Connects as `role` with its password, and returns the SQLSTATE of the failure if any.
async fn connect_error(role: &str, password: &str, database: &str) -> Option<String> {
    match options(role, password, database).connect().await {
        Ok(conn) => {
            let _ = conn.close().await;
            None
        }
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code().map(|c| c.to_string()))
                .unwrap_or_else(|| e.to_string()),
        ),
    }
}

#[tokio::test]
async fn no_component_role_can_connect_to_another_components_database() {
    let (registry, _) = isolated_registry(&registry());
    provision::setup(&registry).await.unwrap();
    // Running setup again changes nothing and does not fail.
    provision::setup(&registry).await.unwrap();

    let stateful: Vec<_> = registry.stateful().collect();
    assert!(stateful.len() >= 3, "services, projections");
    let mut denied = 0;
    for (owner_component, own) in &stateful {
        for (_, other) in &stateful {
            for (role, password) in [
                (&own.owner_role, &own.owner_password),
                (&own.app_role, &own.app_password),
            ] {
                let result = connect_error(role, password, &other.name).await;
                if own.name == other.name {
                    assert_eq!(
                        result, None,
                        "{role} must reach its own database {}",
                        other.name
                    );
                } else {
                    assert_eq!(
                        result.as_deref(),
                        Some("42501"),
                        "{} role {role} must not connect to {}",
                        owner_component.name,
                        other.name
                    );
                    denied += 1;
                }
            }
        }
    }
    let n = stateful.len();
    assert_eq!(denied, 2 * n * (n - 1));
    drop_registry_databases(&registry).await;
}

#[tokio::test]
async fn public_cannot_connect_to_any_component_database() {
    let (registry, _) = isolated_registry(&registry());
    provision::setup(&registry).await.unwrap();
    // A role with no grants at all stands for PUBLIC.
    let outsider = format!("t_outsider_{}", sluice_platform::testing::unique_suffix());
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE ROLE {outsider} LOGIN PASSWORD 'outsider-secret'"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    for (_, db) in registry.stateful() {
        assert_eq!(
            connect_error(&outsider, "outsider-secret", &db.name)
                .await
                .as_deref(),
            Some("42501"),
            "{}",
            db.name
        );
        let public_connect: bool =
            sqlx::query_scalar("SELECT has_database_privilege('public', $1, 'CONNECT')")
                .bind(&db.name)
                .fetch_one(&mut admin)
                .await
                .unwrap_or(true);
        assert!(!public_connect, "PUBLIC still has CONNECT on {}", db.name);
    }
    sqlx::raw_sql(&format!("DROP ROLE {outsider}"))
        .execute(&mut admin)
        .await
        .unwrap();
    drop_registry_databases(&registry).await;
}

#[tokio::test]
async fn component_roles_are_not_privileged() {
    let db =
        TestDatabase::provision("roles", sluice_platform::registry::ComponentKind::Service).await;
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    for role in [&db.spec.owner_role, &db.spec.app_role] {
        let (superuser, createdb, createrole): (bool, bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(
            (superuser, createdb, createrole),
            (false, false, false),
            "{role}"
        );
    }
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1")
            .bind(&db.spec.name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(owner, db.spec.owner_role);
}

#[tokio::test]
async fn the_generated_psql_script_provisions_like_db_setup_and_is_idempotent() {
    let (registry, _) = isolated_registry(&registry());
    let (component, db) = registry.stateful().next().unwrap();
    let script = provision::Plan::for_component(component, db).render_psql("postgres");
    let prefix = component.env_prefix();
    for _ in 0..2 {
        let mut psql = std::process::Command::new("psql")
            .arg(admin_url())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .env(format!("{prefix}_OWNER_PASSWORD"), "owner-secret")
            .env(format!("{prefix}_APP_PASSWORD"), "app-secret")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("psql (the PostgreSQL client) must be installed");
        use std::io::Write;
        psql.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(psql.wait().unwrap().success(), "psql script failed");
    }
    assert_eq!(
        connect_error(&db.app_role, "app-secret", &db.name).await,
        None
    );
    let (_, other) = registry.stateful().nth(1).unwrap();
    assert_eq!(
        connect_error(&db.app_role, "app-secret", &other.name)
            .await
            .as_deref(),
        Some("3D000"),
        "not created by this script"
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    let (owner, public_connect): (String, bool) = sqlx::query_as(
        "SELECT pg_get_userbyid(datdba), has_database_privilege('public', datname, 'CONNECT') \
         FROM pg_database WHERE datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        (owner.as_str(), public_connect),
        (db.owner_role.as_str(), false)
    );
    drop_registry_databases(&registry).await;
}

/// A database that refuses connections is named as such, not as a server that is
/// down or an admin URL that is wrong.
#[tokio::test]
async fn a_component_database_refusing_connections_is_named_by_setup() {
    let (registry, _) = isolated_registry(&registry());
    provision::setup(&registry).await.unwrap();
    let db = support::database_of(&registry, "order_view");
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false"))
        .execute(&mut admin)
        .await
        .unwrap();
    let err = provision::setup(&registry).await.unwrap_err().to_string();
    sqlx::raw_sql(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(
        err.contains(&format!("database `{db}` to set its privileges")),
        "{err}"
    );
    assert!(!err.contains("is the server running"), "{err}");
    sluice_platform::testing::drop_registry_databases(&registry).await;
}
