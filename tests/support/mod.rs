//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod cluster;
pub mod fastavro;
pub mod platform;
pub mod slice;
pub mod wait;

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
