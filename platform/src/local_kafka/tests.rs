use super::*;

#[test]
fn cluster_ids_are_kafka_uuid_strings() {
    assert_eq!(base64_url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(base64_url(&[0xff; 16]), "_____________________w");
    assert_eq!(base64_url(b"Man"), "TWFu");
    assert_eq!(base64_url(b"Ma"), "TWE");
}

#[test]
fn replication_follows_the_cluster_size() {
    let node = NodeSpec {
        id: 2,
        port: 9094,
        controller_port: 9095,
        dir: PathBuf::from("/tmp/n2"),
    };
    let one = server_properties(&node, "2@127.0.0.1:9095", 1);
    assert!(one.contains("default.replication.factor=1\n"), "{one}");
    assert!(one.contains("min.insync.replicas=1\n"), "{one}");
    let three = server_properties(&node, "v", 3);
    assert!(three.contains("default.replication.factor=3\n"), "{three}");
    assert!(three.contains("min.insync.replicas=2\n"), "{three}");
    assert!(three.contains("node.id=2\n"), "{three}");
    assert!(
        three.contains("auto.create.topics.enable=false\n"),
        "{three}"
    );
}
