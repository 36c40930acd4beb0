//! `sluice up` as a child process on an isolated registry (own databases, ports,
//! broker and data directory), for end-to-end tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use serde_json::Value;
use sluice_platform::registry::Registry;
use sluice_platform::testing::{broker_env, isolated_registry};
use uuid::Uuid;

use super::wait::{millis, secs, until};

pub struct Platform {
    child: Option<Child>,
    pub registry: Registry,
    registry_file: std::path::PathBuf,
}

impl Platform {
    pub fn start() -> Self {
        let mut platform = Self::prepare();
        platform.spawn(&["up"]);
        platform
    }

    /// [`Platform::start`], then waits until every component is ready; returns the
    /// HTTP client it waited with.
    pub async fn start_ready() -> (Self, reqwest::Client) {
        let mut platform = Self::start();
        let client = reqwest::Client::new();
        platform.wait_all_ready(&client).await;
        (platform, client)
    }

    /// POSTs `order` to orders' `/orders`, which must answer 201; returns its body.
    pub async fn place_order(&self, client: &reqwest::Client, order: &Value) -> Value {
        let url = self.url("orders", "/orders");
        let response = client.post(&url).json(order).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{order}");
        response.json().await.unwrap()
    }

    /// An isolated registry written to a file, with nothing started yet: run
    /// commands with [`Platform::sluice`], then [`Platform::spawn`] the platform.
    pub fn prepare() -> Self {
        let base =
            Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("sluice.toml")).unwrap();
        let (registry, text) = isolated_registry(&base);
        let registry_file = std::env::temp_dir().join(format!("sluice-up-{}.toml", Uuid::now_v7()));
        std::fs::write(&registry_file, text).unwrap();
        Platform {
            child: None,
            registry,
            registry_file,
        }
    }

    /// Starts `sluice --registry <this platform's> <args>` (`up`, `up --no-setup`)
    /// as the platform's process.
    pub fn spawn(&mut self, args: &[&str]) {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--registry")
            .arg(&self.registry_file)
            .args(args)
            .envs(broker_env(&self.registry))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice up");
        self.child = Some(child);
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the platform was spawned")
    }

    /// The isolated registry's file, for other `sluice` commands against this
    /// platform.
    pub fn registry_file(&self) -> &Path {
        &self.registry_file
    }

    /// Runs `sluice --registry <this platform's> <args>` to its end.
    pub fn sluice(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--registry")
            .arg(&self.registry_file)
            .args(args)
            .envs(broker_env(&self.registry))
            .env("PGPASSWORD", sluice_platform::testing::DEV_ANALYST_PASSWORD)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sluice")
    }

    pub fn url(&self, component: &str, path: &str) -> String {
        let port = self.registry.component(component).unwrap().port;
        format!("http://127.0.0.1:{port}{path}")
    }

    /// Waits until `component` answers its readiness probe; panics if the platform
    /// exits first or a minute passes.
    pub async fn wait_ready(&mut self, client: &reqwest::Client, component: &str) {
        let url = self.url(component, "/health/ready");
        let child = self.child.as_mut().expect("the platform was spawned");
        until(
            &format!("{component} becoming ready"),
            secs(60),
            millis(100),
            async || {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("sluice up exited early with {status}");
                }
                match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
    }

    /// Waits until every component of the registry is ready.
    pub async fn wait_all_ready(&mut self, client: &reqwest::Client) {
        self.wait_ready_all_but(client, &[]).await
    }

    /// Waits until every component of the registry but those in `skip` is ready.
    pub async fn wait_ready_all_but(&mut self, client: &reqwest::Client, skip: &[&str]) {
        for component in self.registry.components().to_vec() {
            if !skip.contains(&component.name.as_str()) {
                self.wait_ready(client, &component.name).await;
            }
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let child = self.child();
        super::terminate(child, secs(20)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("sluice up did not stop within 20 s of SIGTERM")
        })
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        let _ = std::fs::remove_file(&self.registry_file);
        let _ = std::fs::remove_dir_all(&self.registry.platform.data_dir);
    }
}
