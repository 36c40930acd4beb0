use super::*;

const MINIMAL: &str = r#"
        [platform]
        database_host = "127.0.0.1"
        database_port = 5432
        admin_database_url = "postgres://postgres@127.0.0.1/postgres"
        data_dir = ".sluice"
        kafka_brokers = "127.0.0.1:9092"
        [topics."orders.events"]
        partitions = 1
        [components.orders]
        kind = "service"
        port = 8101
        database = "sluice_orders"
        app_password = "a p@ss"
        owner_password = "o"
        produces = ["orders.events"]
    "#;

#[test]
fn derives_roles_and_urls_from_the_database_name() {
    let r = Registry::parse(MINIMAL).unwrap();
    let c = r.component("orders").unwrap();
    let db = c.database.as_ref().unwrap();
    assert_eq!(db.owner_role, "sluice_orders_owner");
    assert_eq!(db.app_role, "sluice_orders_app");
    assert_eq!(
        r.derived_url(&db.app_role, &db.app_password, &db.name),
        "postgres://sluice_orders_app:a%20p%40ss@127.0.0.1:5432/sluice_orders"
    );
}

#[test]
fn duplicate_ports_are_rejected() {
    let text = format!("{MINIMAL}\n[components.payments]\nkind = \"sink\"\nport = 8101\n");
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(err.contains("both use port 8101"), "{err}");
}

#[test]
fn unknown_topic_is_rejected() {
    let text = MINIMAL.replace(
        "partitions = 1",
        "partitions = 1\n[topics.\"x\"]\npartitions = 1",
    )
        + "\n[components.sink]\nkind = \"sink\"\nport = 9000\nconsumes = [\"nope.events\"]\n";
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(err.contains("nope.events"), "{err}");
}

#[test]
fn layer_defaults_by_kind_and_extra_env_names_are_checked() {
    let r = Registry::parse(MINIMAL).unwrap();
    assert_eq!(r.component("orders").unwrap().layer, Layer::Domain);
    let text = MINIMAL.replace(
        "port = 8101",
        "port = 8101\nlayer = \"shared\"\nextra_env = { LIMIT_MINOR = \"5\" }",
    );
    let r = Registry::parse(&text).unwrap();
    let c = r.component("orders").unwrap();
    assert_eq!(c.layer, Layer::Shared);
    assert_eq!(c.extra_env["LIMIT_MINOR"], "5");
    let text = MINIMAL.replace(
        "port = 8101",
        "port = 8101\nextra_env = { \"bad-name\" = \"5\" }",
    );
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("`bad-name` is not an environment variable name"),
        "{err}"
    );
    let text = MINIMAL.replace("port = 8101", "port = 8101\nlayer = \"core\"");
    assert!(Registry::parse(&text).is_err());
}

#[test]
fn a_dependency_cycle_is_rejected_with_its_path() {
    let text = MINIMAL.replace("port = 8101", "port = 8101\ndepends_on = [\"sink\"]")
        + "\n[components.sink]\nkind = \"sink\"\nport = 9000\ndepends_on = [\"orders\"]\n";
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(err.contains("orders → sink → orders"), "{err}");
    let text = MINIMAL.replace("port = 8101", "port = 8101\ndepends_on = [\"orders\"]");
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(err.contains("orders → orders"), "{err}");
}

#[test]
fn unknown_fields_are_rejected() {
    let text = MINIMAL.replace("port = 8101", "port = 8101\nprot = 1");
    let err = Registry::parse(&text).unwrap_err().to_string();
    assert!(err.contains("prot"), "{err}");
}

#[test]
fn bad_database_names_are_rejected() {
    let text = MINIMAL.replace("\"sluice_orders\"", "\"Orders; DROP\"");
    assert!(matches!(
        Registry::parse(&text),
        Err(RegistryError::Invalid(_))
    ));
}

#[test]
fn topic_names_carry_the_prefix_only_on_the_broker() {
    let names = TopicNames::new("t_1a2b.");
    assert_eq!(names.physical("orders.events"), "t_1a2b.orders.events");
    assert_eq!(names.logical("t_1a2b.orders.events"), Some("orders.events"));
    assert_eq!(names.logical(&names.physical("x.dlq")), Some("x.dlq"));
    // Another namespace's topics, and the bare prefix, are not ours.
    assert_eq!(names.logical("orders.events"), None);
    assert_eq!(names.logical("t_ffff.orders.events"), None);
    assert_eq!(names.logical("t_1a2b."), None);
    let none = TopicNames::default();
    assert_eq!(none.physical("orders.events"), "orders.events");
    assert_eq!(none.logical("orders.events"), Some("orders.events"));
}

#[test]
fn topic_settings_default_to_one_replica_and_an_unprefixed_namespace() {
    let r = Registry::parse(MINIMAL).unwrap();
    assert_eq!(r.platform.topic_prefix, "");
    assert_eq!(r.replication(), Replication::default());
    let spec = r.topic_spec("orders.events").unwrap();
    assert_eq!(spec.name, "orders.events");
    assert_eq!(spec.partitions, 1);
    assert_eq!(spec.replication_factor, 1);
    assert_eq!(
        spec.config,
        BTreeMap::from([
            ("cleanup.policy".to_owned(), "delete".to_owned()),
            ("min.insync.replicas".to_owned(), "1".to_owned()),
            ("retention.ms".to_owned(), "-1".to_owned()),
        ])
    );
    assert!(r.topic_spec("nope.events").is_none());
}

#[test]
fn topic_specs_carry_the_prefix_the_replication_and_the_topic_config() {
    let text = MINIMAL
            .replace(
                "kafka_brokers = \"127.0.0.1:9092\"",
                "kafka_brokers = \"127.0.0.1:9092\"\ntopic_prefix = \"staging.\"\n\
                 replication_factor = 3\nmin_insync_replicas = 2",
            )
            .replace(
                "partitions = 1",
                "partitions = 6\nconfig = { \"retention.ms\" = 86400000, \"compression.type\" = \"zstd\" }",
            );
    let r = Registry::parse(&text).unwrap();
    let spec = r.topic_spec("orders.events").unwrap();
    assert_eq!(spec.name, "staging.orders.events");
    assert_eq!((spec.partitions, spec.replication_factor), (6, 3));
    assert_eq!(spec.config["retention.ms"], "86400000");
    assert_eq!(spec.config["compression.type"], "zstd");
    assert_eq!(spec.config["min.insync.replicas"], "2");
    assert_eq!(spec.config["cleanup.policy"], "delete");
    assert_eq!(r.topic_specs(), vec![spec]);
    let dlq = r.dead_letter_topic("order_view");
    assert_eq!(dlq.name, "staging.order_view.dlq");
    assert_eq!((dlq.partitions, dlq.replication_factor), (1, 3));
    assert_eq!(dlq.config["min.insync.replicas"], "2");
    assert!(!dlq.config.contains_key("retention.ms"));
}

#[test]
fn bad_topic_settings_are_rejected() {
    let with = |extra: &str| {
        MINIMAL.replace(
            "kafka_brokers = \"127.0.0.1:9092\"",
            &format!("kafka_brokers = \"127.0.0.1:9092\"\n{extra}"),
        )
    };
    let err = Registry::parse(&with("topic_prefix = \"a b/\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic_prefix"), "{err}");
    let err = Registry::parse(&with("min_insync_replicas = 2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("min_insync_replicas (2)"), "{err}");
    let err = Registry::parse(&with("replication_factor = 0"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn unknown_component_lists_the_known_ones() {
    let r = Registry::parse(MINIMAL).unwrap();
    let err = r.component("billing").unwrap_err().to_string();
    assert!(err.contains("known: orders"), "{err}");
}

#[test]
fn the_sinks_batch_settings_are_optional_and_a_zero_batch_is_refused() {
    let analytics = "[analytics]\nsql_port = 5433\n";
    let r = Registry::parse(&format!("{MINIMAL}\n{analytics}")).unwrap();
    let config = r.analytics.unwrap();
    assert_eq!((config.batch_size, config.batch_wait_ms), (None, None));
    let r = Registry::parse(&format!(
        "{MINIMAL}\n{analytics}batch_size = 40\nbatch_wait_ms = 5\n"
    ))
    .unwrap();
    let config = r.analytics.unwrap();
    assert_eq!(config.batch_size.map(|n| n.get()), Some(40));
    assert_eq!(config.batch_wait_ms, Some(5));
    let err = Registry::parse(&format!("{MINIMAL}\n{analytics}batch_size = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch_size") && err.contains("nonzero"),
        "{err}"
    );
}
