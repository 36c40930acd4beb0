//! Lists `schemas/orders/` into the crate's `schemas()` (see `sluice_build`), and
//! rebuilds when a migration is added (`sqlx::migrate!` cannot see new files).

fn main() {
    println!("cargo::rerun-if-changed=migrations");
    sluice_build::embed_schemas("orders");
}
