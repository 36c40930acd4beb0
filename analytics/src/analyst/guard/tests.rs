//! Unit tests of `guard`.

use super::*;

#[test]
fn statements_split_at_top_level_semicolons_only() {
    assert_eq!(
        split_statements("select ';'; select 2 -- x;y\n; /* ; */ select $$;$$;;"),
        vec!["select ';'", "select 2 -- x;y", "/* ; */ select $$;$$"]
    );
    assert_eq!(split_statements("select $1, $2"), vec!["select $1, $2"]);
    assert!(split_statements(" ; -- only a comment").is_empty());
}

#[test]
fn client_settings_are_no_ops_and_others_are_refused() {
    let ok = |s| classify_client_statement(s).unwrap().unwrap();
    assert_eq!(
        ok("SET application_name = 'psql'"),
        Checked::NoOp { tag: "SET" }
    );
    assert_eq!(
        ok("set extra_float_digits to 3"),
        Checked::NoOp { tag: "SET" }
    );
    assert_eq!(ok("BEGIN"), Checked::NoOp { tag: "BEGIN" });
    assert!(
        classify_client_statement("SET enable_external_access = true")
            .unwrap()
            .is_err()
    );
    assert!(matches!(
        ok("SHOW TRANSACTION ISOLATION LEVEL"),
        Checked::Setting {
            value: "read committed",
            ..
        }
    ));
    assert!(classify_client_statement("SHOW TABLES").is_none());
    assert!(classify_client_statement("select 1").is_none());
}

#[test]
fn refused_statements_are_named() {
    assert_eq!(
        statement_kind("create or replace macro m() as 1"),
        "CREATE MACRO"
    );
    assert_eq!(statement_kind("-- c\n insert into t values (1)"), "INSERT");
    assert_eq!(statement_kind("DROP TABLE t"), "DROP TABLE");
}
