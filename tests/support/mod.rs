//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod cluster;
pub mod fastavro;
pub mod platform;
pub mod slice;
pub use sluice_platform::testing::wait;

use sluice_platform::registry::Registry;

/// The name of `component`'s database in `registry` (a component with none is a
/// test's mistake).
pub fn database_of(registry: &Registry, component: &str) -> String {
    registry
        .component(component)
        .expect("a component of the registry")
        .database
        .as_ref()
        .expect("a component with a database")
        .name
        .clone()
}

/// GETs `url` and decodes its JSON body, whatever the status.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> T {
    let response = client.get(url).send().await.expect("the GET is answered");
    response.json().await.expect("a JSON body")
}

/// The body of a `POST /orders`: one line of `quantity` × `sku` at
/// `unit_price_minor` euro cents.
pub fn order(
    order_id: uuid::Uuid,
    customer: &str,
    sku: &str,
    quantity: u32,
    unit_price_minor: i64,
) -> serde_json::Value {
    serde_json::json!({
        "order_id": order_id, "customer_id": customer, "currency": "EUR",
        "lines": [{ "sku": sku, "quantity": quantity, "unit_price_minor": unit_price_minor }]
    })
}

/// SIGTERM to `child`, then a wait of at most `within` for it to exit; `None`
/// when it is still running then (the caller kills it and says why).
pub fn terminate(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}
