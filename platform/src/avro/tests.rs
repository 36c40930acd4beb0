use serde_json::json;

use super::*;

const ORDER_PLACED: &str = r#"{
  "type": "record", "name": "OrderPlaced", "namespace": "io.sluice.test", "doc": "d",
  "fields": [
    {"name": "order_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "d"},
    {"name": "lines", "doc": "d", "type": {"type": "array", "items": {
      "type": "record", "name": "Line", "doc": "d", "fields": [
        {"name": "sku", "type": "string", "doc": "d"},
        {"name": "quantity", "type": "int", "doc": "d"}]}}},
    {"name": "total_minor", "type": "long", "doc": "d"},
    {"name": "note", "type": ["null", "string"], "default": null, "doc": "d"},
    {"name": "priority", "doc": "d",
     "type": {"type": "enum", "name": "Priority", "symbols": ["LOW", "HIGH"]}}
  ]
}"#;

fn catalog() -> SchemaCatalog {
    SchemaCatalog::new([SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED)]).unwrap()
}

fn payload() -> Value {
    json!({
        "order_id": "0190a5e2-7c4b-7d1e-9f3a-2b8c4d6e8f10",
        "lines": [{"sku": "BOOK-1", "quantity": 2}, {"sku": "PEN-9", "quantity": 1}],
        "total_minor": 2800,
        "note": "gift wrap",
        "priority": "HIGH"
    })
}

/// [`payload`] encoded by `catalog` as a single-object `OrderPlaced` v1.
fn encoded(catalog: &SchemaCatalog) -> Vec<u8> {
    catalog
        .encode_single_object("OrderPlaced", 1, &payload())
        .unwrap()
}

fn mismatch(payload: Value) -> String {
    match catalog().encode_single_object("OrderPlaced", 1, &payload) {
        Err(AvroError::PayloadMismatch { message, .. }) => message,
        other => panic!("expected a payload mismatch, got {other:?}"),
    }
}

#[test]
fn encoding_is_marker_then_little_endian_fingerprint_then_datum() {
    let catalog = catalog();
    let bytes = encoded(&catalog);
    assert_eq!(bytes[..2], [0xC3, 0x01]);
    let fingerprint = catalog.fingerprint("OrderPlaced", 1).unwrap();
    assert_eq!(bytes[2..10], fingerprint.0);
    let canonical = catalog.canonical_form("OrderPlaced", 1).unwrap();
    assert_eq!(
        fingerprint.value().to_le_bytes(),
        crc64_avro(canonical.as_bytes()).0
    );
    let datum = apache_avro::to_avro_datum(
        catalog.schema("OrderPlaced", 1).unwrap(),
        json::to_avro(
            catalog.schema("OrderPlaced", 1).unwrap(),
            &HashMap::new(),
            &payload(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(bytes[10..], datum);
}

#[test]
fn decoding_returns_the_payload_and_the_writer_schema_version() {
    let catalog = catalog();
    let bytes = encoded(&catalog);
    assert_eq!(
        catalog.decode_single_object(&bytes).unwrap(),
        DecodedEvent {
            event_type: "OrderPlaced".into(),
            schema_version: 1,
            payload: payload(),
        }
    );
}

#[test]
fn apache_avro_reads_the_datum_with_the_schema() {
    let catalog = catalog();
    let bytes = encoded(&catalog);
    let schema = catalog.schema("OrderPlaced", 1).unwrap();
    let value = apache_avro::from_avro_datum(schema, &mut &bytes[10..], None).unwrap();
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("{value:?}")
    };
    assert_eq!(fields[2], ("total_minor".into(), 2800i64.into()));
}

#[test]
fn an_unknown_fingerprint_is_refused_naming_it() {
    let bytes = encoded(&catalog());
    let other = SchemaCatalog::new([SchemaSource::embedded(
        "Other",
        1,
        r#"{"type":"record","name":"Other","fields":[]}"#,
    )])
    .unwrap();
    let err = other.decode_single_object(&bytes).unwrap_err();
    let hex: String = bytes[2..10].iter().map(|b| format!("{b:02x}")).collect();
    assert!(matches!(err, AvroError::UnknownFingerprint(_)), "{err:?}");
    assert!(err.to_string().contains(&hex), "{err}");
}

#[test]
fn bytes_without_the_marker_or_header_are_not_single_objects() {
    let catalog = catalog();
    let mut bytes = encoded(&catalog);
    assert!(matches!(
        catalog.decode_single_object(&bytes[..9]),
        Err(AvroError::NotSingleObject(_))
    ));
    bytes[1] = 0x02;
    let err = catalog.decode_single_object(&bytes).unwrap_err();
    assert!(err.to_string().contains("C3 02, not C3 01"), "{err}");
}

#[test]
fn truncated_or_overlong_datums_are_malformed() {
    let catalog = catalog();
    let bytes = encoded(&catalog);
    for bad in [
        bytes[..bytes.len() - 3].to_vec(),
        [&bytes[..], &[0]].concat(),
    ] {
        assert!(
            matches!(
                catalog.decode_single_object(&bad),
                Err(AvroError::MalformedDatum { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_missing_required_field_is_refused() {
    let mut p = payload();
    p.as_object_mut().unwrap().remove("total_minor");
    assert_eq!(
        mismatch(p),
        "`total_minor`: the field is required and missing"
    );
}

#[test]
fn a_wrong_type_is_refused_with_the_path_to_it() {
    let mut p = payload();
    p["lines"][1]["quantity"] = json!("one");
    assert_eq!(
        mismatch(p),
        "`lines[1].quantity`: expected an int (a whole number), got \"one\""
    );
}

#[test]
fn a_field_unknown_to_the_schema_is_refused() {
    let mut p = payload();
    p["discount"] = json!(5);
    assert!(mismatch(p).contains("`discount` is not a field of OrderPlaced"));
}

#[test]
fn values_out_of_range_or_not_uuids_are_refused() {
    let mut p = payload();
    p["lines"][0]["quantity"] = json!(i64::from(i32::MAX) + 1);
    assert!(mismatch(p).contains("out of the range of an Avro int"));
    let mut p = payload();
    p["total_minor"] = json!(1.5);
    assert!(mismatch(p).contains("expected a long"));
    let mut p = payload();
    p["order_id"] = json!("not-a-uuid");
    assert!(mismatch(p).contains("expected a UUID string"));
    let mut p = payload();
    p["priority"] = json!("URGENT");
    assert!(mismatch(p).contains("`URGENT` is not one of the symbols LOW, HIGH"));
    let mut p = payload();
    p["note"] = json!(7);
    assert_eq!(mismatch(p), "`note`: expected a string, got 7");
}

#[test]
fn optional_fields_take_null_or_their_default() {
    let catalog = catalog();
    let mut p = payload();
    p["note"] = Value::Null;
    catalog.validate("OrderPlaced", 1, &p).unwrap();
    p.as_object_mut().unwrap().remove("note");
    let bytes = catalog.encode_single_object("OrderPlaced", 1, &p).unwrap();
    let decoded = catalog.decode_single_object(&bytes).unwrap();
    assert_eq!(decoded.payload["note"], Value::Null);
}

#[test]
fn new_events_are_validated_against_the_latest_version() {
    let v2 = ORDER_PLACED.replace(
        r#"{"name": "total_minor", "type": "long", "doc": "d"},"#,
        r#"{"name": "total_minor", "type": "long", "doc": "d"},
           {"name": "channel", "type": "string", "default": "web", "doc": "d"},"#,
    );
    let catalog = SchemaCatalog::new([
        SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED),
        SchemaSource::owned("OrderPlaced", 2, v2),
    ])
    .unwrap();
    assert_eq!(catalog.versions("OrderPlaced"), [1, 2]);
    assert_eq!(catalog.latest("OrderPlaced").unwrap().0, 2);
    assert_eq!(
        catalog.validate_latest("OrderPlaced", &payload()).unwrap(),
        2
    );
    let mut p = payload();
    p["channel"] = json!("app");
    assert!(catalog.validate("OrderPlaced", 1, &p).is_err());
    assert!(matches!(
        catalog.validate_latest("OrderShipped", &p),
        Err(AvroError::UnknownEventType { .. })
    ));
    assert!(matches!(
        catalog.validate("OrderPlaced", 3, &p),
        Err(AvroError::UnknownVersion { .. })
    ));
    // Each version decodes with its own schema.
    let v1_bytes = encoded(&catalog);
    assert_eq!(
        catalog
            .decode_single_object(&v1_bytes)
            .unwrap()
            .schema_version,
        1
    );
}

#[test]
fn invalid_catalogs_are_refused() {
    let cases = [
        (
            SchemaSource::embedded("OrderPlaced", 1, "{"),
            "OrderPlaced v1 is invalid",
        ),
        (
            SchemaSource::embedded("OrderConfirmed", 1, ORDER_PLACED),
            "must be named after its event type",
        ),
        (
            SchemaSource::embedded("OrderPlaced", 1, r#""string""#),
            "must be a record",
        ),
        (
            SchemaSource::embedded("OrderPlaced", 0, ORDER_PLACED),
            "versions start at 1",
        ),
        (
            SchemaSource::embedded(
                "Blob",
                1,
                r#"{"type":"record","name":"Blob","fields":[{"name":"data","type":"bytes"}]}"#,
            ),
            "field `data`: bytes has no JSON mapping",
        ),
    ];
    for (source, needle) in cases {
        let err = SchemaCatalog::new([source]).unwrap_err().to_string();
        assert!(err.contains(needle), "`{err}` should mention `{needle}`");
    }
    let twice = SchemaCatalog::new([
        SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED),
        SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED),
    ]);
    assert!(matches!(twice, Err(AvroError::DuplicateSchema { .. })));
    let same_again = SchemaCatalog::new([
        SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED),
        // Only the docs differ: the canonical form, hence the fingerprint, is the same.
        SchemaSource::owned("OrderPlaced", 2, ORDER_PLACED.replace("\"d\"", "\"other\"")),
    ]);
    assert!(matches!(
        same_again,
        Err(AvroError::DuplicateFingerprint { .. })
    ));
}

#[test]
fn json_text_of_a_datum_is_the_text_of_its_decoded_payload() {
    const MIXED: &str = r#"{
      "type": "record", "name": "Mixed", "doc": "d",
      "fields": [
        {"name": "z", "type": "double", "doc": "d"},
        {"name": "tags", "type": {"type": "map", "values": "float"}, "doc": "d"},
        {"name": "a", "type": ["null", "boolean"], "doc": "d"},
        {"name": "text", "type": "string", "doc": "d"}
      ]
    }"#;
    let catalog = SchemaCatalog::new([
        SchemaSource::embedded("OrderPlaced", 1, ORDER_PLACED),
        SchemaSource::embedded("Mixed", 1, MIXED),
    ])
    .unwrap();
    let payloads = [
        ("OrderPlaced", payload()),
        (
            "Mixed",
            json!({"z": 0.1, "tags": {"b": 1.5, "a": -2.25}, "a": null, "text": "quote \" tab \t é"}),
        ),
    ];
    for (event_type, payload) in payloads {
        let bytes = catalog
            .encode_single_object(event_type, 1, &payload)
            .unwrap();
        let datum = catalog.decode_single_object_datum(&bytes).unwrap();
        let decoded = catalog.decode_single_object(&bytes).unwrap();
        assert_eq!(
            json_text(&datum.value).unwrap(),
            decoded.payload.to_string(),
            "{event_type}"
        );
        assert_eq!(
            (datum.event_type.as_str(), datum.schema_version),
            (event_type, 1)
        );
    }
}
