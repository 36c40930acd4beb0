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
