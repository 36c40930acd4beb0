//! What `sluice up` checks before it starts anything, so that the usual reasons a
//! first start fails each give one sentence saying what to do instead of a stack of
//! errors from every component at once.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use sluice_platform::registry::Registry;

/// A reason `sluice up` cannot start, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Nothing answers at the registry's PostgreSQL address.
    #[error(
        "PostgreSQL does not answer at {address} ({reason}): start it (on Debian, `bash deploy/dev/setup.sh` installs and starts one), or set [platform] database_host and database_port in the registry to a server that runs"
    )]
    Postgres { address: String, reason: String },
    /// A port the platform listens on is taken.
    #[error(
        "port {port} ({what}) is taken by another process (a `sluice up` already running? `ss -ltnp 'sport = :{port}'` names it): stop that process, or change the port in the registry"
    )]
    PortTaken { port: u16, what: String },
}

/// Checks that PostgreSQL answers and that every port `sluice up` will listen on is
/// free (the local broker's too when `local_broker`).
pub fn check(registry: &Registry, local_broker: bool) -> Result<(), PreflightError> {
    let platform = &registry.platform;
    let address = format!("{}:{}", platform.database_host, platform.database_port);
    postgres_answers(&address).map_err(|reason| PreflightError::Postgres {
        address: address.clone(),
        reason,
    })?;
    let host = sluice_platform::service::listen_host();
    let mut ports: Vec<(u16, String)> = registry
        .components()
        .iter()
        .filter(|c| crate::components::runnable(c).is_some())
        .map(|c| (c.port, format!("`{}`", c.name)))
        .collect();
    if let Some(analytics) = &registry.analytics {
        ports.push((analytics.sql_port, "the analyst SQL endpoint".to_owned()));
    }
    if local_broker {
        if let Some(port) = local_broker_port(registry) {
            ports.push((port, "the local broker".to_owned()));
        }
    }
    for (port, what) in ports {
        if TcpListener::bind((host.as_str(), port)).is_err() {
            return Err(PreflightError::PortTaken { port, what });
        }
    }
    Ok(())
}

/// The port a broker `sluice up` runs itself listens on: that of `kafka_brokers`.
pub fn local_broker_port(registry: &Registry) -> Option<u16> {
    registry
        .platform
        .kafka_brokers
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
}

fn postgres_answers(address: &str) -> Result<(), String> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve it: {e}"))?
        .collect();
    let mut last = "no address".to_owned();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with(text_edit: impl Fn(String) -> String) -> Registry {
        let text = std::fs::read_to_string(crate::components::REFERENCE_REGISTRY).unwrap();
        Registry::parse(&text_edit(text)).unwrap()
    }

    #[test]
    fn an_unreachable_postgres_is_named_with_what_to_do() {
        // A port nothing listens on: bind one and let it go.
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let registry = registry_with(|t| {
            t.replace("database_port = 5432", &format!("database_port = {free}"))
        });
        let err = check(&registry, false).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("PostgreSQL does not answer at 127.0.0.1:{free}")),
            "{err}"
        );
        assert!(err.contains("deploy/dev/setup.sh"), "{err}");
    }

    #[test]
    fn a_taken_port_is_named_with_its_component() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // PostgreSQL must answer for the port check to be reached: point the
        // registry's database at a listener of our own.
        let pg = TcpListener::bind("127.0.0.1:0").unwrap();
        let pg_port = pg.local_addr().unwrap().port();
        // Every other port free, whatever else runs on this machine.
        let registry = registry_with(|t| {
            let mut t = t
                .replace(
                    "database_port = 5432",
                    &format!("database_port = {pg_port}"),
                )
                .replace("port = 8102", &format!("port = {port}"));
            for other in [
                "port = 8101",
                "port = 8103",
                "port = 8201",
                "port = 8202",
                "port = 8301",
                "sql_port = 5433",
            ] {
                let free = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let (key, _) = other.split_once(" = ").unwrap();
                t = t.replace(other, &format!("{key} = {free}"));
            }
            t
        });
        let err = check(&registry, false).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("port {port} (`payments`) is taken")),
            "{err}"
        );
    }
}
