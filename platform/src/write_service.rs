//! What every write service crate's root declares, in one place: its
//! [`WriteService`](crate::service::WriteService), its own migrations and its
//! embedded Avro contracts.

/// Declares a write service crate's `pub const SERVICE:`
/// [`WriteService`](crate::service::WriteService) named `name`, with `router` and
/// `reactor`, together with what it names:
///
/// - `migrator()`: the crate's own `./migrations`, run after the event store's;
/// - `schemas()`: the crate's Avro contracts, listed by its build script
///   (`sluice_build::embed_schemas`) into `$OUT_DIR/schemas.rs`.
///
/// Attributes and doc comments before `name` go on `SERVICE`.
///
/// ```text
/// sluice_platform::write_service! {
///     /// The orders service as the platform runs it.
///     name: "orders",
///     router: api::router,
///     reactor: Some(reactor::handler),
/// }
/// ```
#[macro_export]
macro_rules! write_service {
    (
        $(#[$attr:meta])*
        name: $name:literal,
        router: $router:expr,
        reactor: $reactor:expr $(,)?
    ) => {
        $(#[$attr])*
        pub const SERVICE: $crate::service::WriteService = $crate::service::WriteService {
            name: $name,
            migrator,
            schemas,
            router: $router,
            reactor: $reactor,
        };

        #[doc = concat!("The ", $name, " store's own migrations (after the event store's).")]
        pub fn migrator() -> ::sqlx::migrate::Migrator {
            ::sqlx::migrate!("./migrations")
        }

        include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
    };
}
