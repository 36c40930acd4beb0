//! Unit tests of `columns`.

use super::*;

#[test]
fn nested_payload_fields_build_lists_structs_and_maps_with_nulls() {
    let kind = Kind::Struct(vec![
        (
            "lines".to_owned(),
            Kind::List(Box::new(Kind::Struct(vec![
                ("sku".to_owned(), Kind::Varchar),
                ("quantity".to_owned(), Kind::Integer),
            ]))),
        ),
        ("tags".to_owned(), Kind::Map(Box::new(Kind::BigInt))),
        ("id".to_owned(), Kind::Uuid),
    ]);
    let mut column = ColumnBuilder::new(&kind, 4);
    let id = Uuid::now_v7();
    let line = |sku: &str, quantity: Avro| {
        Avro::Record(vec![
            ("sku".into(), Avro::String(sku.into())),
            ("quantity".into(), quantity),
        ])
    };
    column.push_avro(Some(&Avro::Record(vec![
        (
            "lines".into(),
            Avro::Array(vec![
                line("a", Avro::Int(2)),
                line("b", Avro::String("x".into())),
            ]),
        ),
        (
            "tags".into(),
            Avro::Map([("k".to_owned(), Avro::Long(1))].into()),
        ),
        ("id".into(), Avro::Uuid(id)),
    ])));
    column.push_avro(None);
    column.push_avro(Some(&Avro::Record(vec![
        ("lines".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("id".into(), Avro::String("not a uuid".into())),
    ])));
    let (field, array) = column.finish("payload");
    assert_eq!(array.len(), 3);
    assert!(array.is_null(1));
    let array = array
        .as_any()
        .downcast_ref::<StructArray>()
        .expect("struct");
    let lines = array
        .column(0)
        .as_any()
        .downcast_ref::<ListArray>()
        .expect("list");
    assert_eq!(lines.value_length(0), 2);
    assert!(lines.is_null(2));
    let quantities = lines
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .expect("line");
    assert!(quantities.column(1).is_null(1), "a string is no int: NULL");
    let ids = array.column(2);
    assert!(ids.is_valid(0) && ids.is_null(2));
    let DataType::Struct(fields) = field.data_type() else {
        panic!("a struct field")
    };
    assert_eq!(
        fields[2]
            .metadata()
            .get(EXTENSION_NAME_KEY)
            .map(String::as_str),
        Some(UUID_EXTENSION)
    );
}
