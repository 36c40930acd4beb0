//! A write service's HTTP API on a random port over its own fresh database, served
//! the way `sluice run` serves it.

use super::{service_context, TestDatabase};

pub struct TestApp {
    pub address: String,
    pub store: crate::store::EventStore,
    pub db: TestDatabase,
    shutdown: tokio_util::sync::CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Provisions, migrates and serves `service` the way `sluice run` does.
    pub async fn spawn(service: &crate::service::WriteService) -> Self {
        let db = TestDatabase::for_service(service).await;
        let pool = db.app_pool().await;
        let store = crate::store::EventStore::new(pool.clone());
        let router = crate::http::with_platform_routes(
            (service.router)(&service_context(service, &store)).expect("the service's router"),
            service.name,
            Some(pool),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind random port");
        let address = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::http::serve(listener, router, shutdown.clone()));
        TestApp {
            address,
            store,
            db,
            shutdown,
            server: Some(server),
        }
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Number of events in the service's store.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.store.pool())
            .await
            .expect("count events")
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
