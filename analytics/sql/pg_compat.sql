-- The PostgreSQL catalog as drivers and tools read it: what DuckDB's own
-- pg_catalog lacks, created as temporary objects on each analyst session's
-- connection (see analytics/src/analyst/catalog.rs, which routes queries here).
-- Only reads: every macro and view below is a look-up or a constant.

-- Object-identifier casts: 'raw_events'::regclass is the relation's oid, and
-- an oid cast to regclass and on to text is the relation's name.
CREATE TEMP MACRO sluice_regclass(x) AS coalesce(try_cast(x AS BIGINT),
    (SELECT oid FROM pg_catalog.pg_class WHERE relname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1));
CREATE TEMP MACRO sluice_regclass_name(x) AS coalesce(
    (SELECT relname FROM pg_catalog.pg_class WHERE oid = try_cast(x AS BIGINT)), CAST(x AS VARCHAR));
CREATE TEMP MACRO sluice_regtype(x) AS coalesce(try_cast(x AS BIGINT),
    (SELECT oid FROM pg_catalog.pg_type WHERE typname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1));
CREATE TEMP MACRO sluice_regtype_name(x) AS coalesce(
    (SELECT typname FROM pg_catalog.pg_type WHERE oid = try_cast(x AS BIGINT)), CAST(x AS VARCHAR));
CREATE TEMP MACRO sluice_regnamespace(x) AS coalesce(try_cast(x AS BIGINT),
    (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1));
CREATE TEMP MACRO sluice_regnamespace_name(x) AS coalesce(
    (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = try_cast(x AS BIGINT)), CAST(x AS VARCHAR));
CREATE TEMP MACRO sluice_regproc(x) AS coalesce(try_cast(x AS BIGINT),
    (SELECT oid FROM pg_catalog.pg_proc WHERE proname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1));
CREATE TEMP MACRO sluice_regproc_name(x) AS coalesce(
    (SELECT proname FROM pg_catalog.pg_proc WHERE oid = try_cast(x AS BIGINT)), CAST(x AS VARCHAR));
CREATE TEMP MACRO to_regclass(x) AS
    (SELECT oid FROM pg_catalog.pg_class WHERE relname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1);
CREATE TEMP MACRO to_regtype(x) AS
    (SELECT oid FROM pg_catalog.pg_type WHERE typname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1);

-- Functions DuckDB does not have, or answers differently (and sluice_version(),
-- created by catalog.rs with the PostgreSQL version the endpoint reports).
CREATE TEMP MACRO sluice_pg_get_expr(expression, relation) AS expression,
    (expression, relation, pretty) AS expression;
-- PostgreSQL's canonical type names, which drivers map to their types
-- (SQLAlchemy knows `integer`, not DuckDB's `int4`).
CREATE TEMP MACRO sluice_format_type(type_oid, typemod) AS CASE type_oid
    WHEN 16 THEN 'boolean' WHEN 17 THEN 'bytea' WHEN 20 THEN 'bigint' WHEN 21 THEN 'smallint'
    WHEN 23 THEN 'integer' WHEN 25 THEN 'text' WHEN 700 THEN 'real' WHEN 701 THEN 'double precision'
    WHEN 1043 THEN 'character varying' WHEN 1082 THEN 'date' WHEN 1083 THEN 'time without time zone'
    WHEN 1114 THEN 'timestamp without time zone' WHEN 1184 THEN 'timestamp with time zone'
    WHEN 1186 THEN 'interval' WHEN 1266 THEN 'time with time zone' WHEN 2950 THEN 'uuid'
    WHEN 1700 THEN 'numeric' || CASE WHEN typemod > 0
        THEN '(' || (typemod // 1000) || ',' || (typemod % 1000) || ')' ELSE '' END
    ELSE (SELECT typname FROM pg_catalog.pg_type WHERE oid = type_oid LIMIT 1) END;
CREATE TEMP MACRO pg_get_userbyid(role) AS 'sluice';
CREATE TEMP MACRO pg_encoding_to_char(encoding) AS 'UTF8';
CREATE TEMP MACRO pg_get_indexdef(index_oid, column_no, pretty) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO pg_get_function_result(function_oid) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO pg_get_function_arguments(function_oid) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO pg_get_function_identity_arguments(function_oid) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO pg_relation_is_publishable(relation) AS false;
CREATE TEMP MACRO pg_get_statisticsobjdef_columns(statistics) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO pg_get_serial_sequence(relation, column_name) AS CAST(NULL AS VARCHAR);
CREATE TEMP MACRO array_upper(a, dimension) AS len(a);
CREATE TEMP MACRO array_lower(a, dimension) AS CASE WHEN len(a) > 0 THEN 1 END;
CREATE TEMP MACRO quote_ident(name) AS
    CASE WHEN regexp_full_match(name, '[a-z_][a-z0-9_]*') THEN name ELSE '"' || replace(name, '"', '""') || '"' END;
CREATE TEMP MACRO json_build_object(k1, v1) AS json_object(CAST(k1 AS VARCHAR), v1),
    (k1, v1, k2, v2) AS json_object(CAST(k1 AS VARCHAR), v1, CAST(k2 AS VARCHAR), v2),
    (k1, v1, k2, v2, k3, v3, k4, v4, k5, v5, k6, v6, k7, v7) AS json_object(
        CAST(k1 AS VARCHAR), v1, CAST(k2 AS VARCHAR), v2, CAST(k3 AS VARCHAR), v3,
        CAST(k4 AS VARCHAR), v4, CAST(k5 AS VARCHAR), v5, CAST(k6 AS VARCHAR), v6,
        CAST(k7 AS VARCHAR), v7);
-- information_schema._pg_expandarray(a): each element with its 1-based index.
CREATE TEMP MACRO sluice_pg_expandarray(a) AS
    unnest(list_transform(range(1, len(a) + 1), lambda i: {'x': a[i], 'n': i}));
CREATE TEMP MACRO pg_get_keywords() AS TABLE
    SELECT keyword_name AS word, 'U' AS catcode, keyword_category AS catdesc FROM duckdb_keywords();

-- Relations with the columns PostgreSQL clients read.
-- DuckDB's pg_attribute gives a column's type as DuckDB's type id (13 for
-- INTEGER), where pg_type has PostgreSQL's oid (23): mapped to the oid of the
-- type the endpoint announces for such a column in its results (types.rs:
-- unsigned and huge integers widened; lists, structs and the like are text,
-- pg_type's character varying), so
-- that drivers' joins on atttypid find it.
CREATE TEMP VIEW sluice_pg_attribute AS
    SELECT * REPLACE (CASE atttypid
        WHEN 10 THEN 16 WHEN 11 THEN 21 WHEN 12 THEN 21 WHEN 13 THEN 23 WHEN 14 THEN 20
        WHEN 15 THEN 1082 WHEN 16 THEN 1083 WHEN 17 THEN 1114 WHEN 18 THEN 1114 WHEN 19 THEN 1114
        WHEN 20 THEN 1114 WHEN 21 THEN 1700 WHEN 22 THEN 700 WHEN 23 THEN 701 WHEN 25 THEN 1043
        WHEN 26 THEN 17 WHEN 27 THEN 1186 WHEN 28 THEN 21 WHEN 29 THEN 23 WHEN 30 THEN 20
        WHEN 31 THEN 1700 WHEN 32 THEN 1184 WHEN 49 THEN 1700 WHEN 50 THEN 1700 WHEN 54 THEN 2950
        ELSE 1043 END AS atttypid)
      FROM pg_catalog.pg_attribute;
CREATE TEMP VIEW sluice_pg_class AS
    SELECT *, false AS relforcerowsecurity FROM pg_catalog.pg_class;
-- The warehouse's schemas and, as in PostgreSQL, pg_catalog and
-- information_schema (DuckDB's lists the first only).
CREATE TEMP VIEW sluice_pg_namespace AS
    SELECT oid, schema_name AS nspname, 10::BIGINT AS nspowner, NULL::VARCHAR[] AS nspacl
      FROM duckdb_schemas()
     WHERE database_name = current_database()
        OR (database_name = 'system' AND schema_name IN ('pg_catalog', 'information_schema'));
CREATE TEMP VIEW sluice_pg_database AS
    SELECT oid, datname, 10::BIGINT AS datdba, 6 AS encoding, 'C' AS datcollate, 'C' AS datctype,
           NULL::VARCHAR AS daticulocale, 'c' AS datlocprovider, NULL::VARCHAR[] AS datacl,
           datallowconn, datistemplate, -1 AS datconnlimit, NULL::BIGINT AS dattablespace
      FROM pg_catalog.pg_database
     WHERE datname NOT IN ('system', 'temp');
CREATE TEMP VIEW sluice_pg_collation AS
    SELECT oid, collname,
           (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_catalog' LIMIT 1) AS collnamespace
      FROM pg_catalog.pg_collation;
CREATE TEMP VIEW sluice_pg_roles AS
    SELECT 10::BIGINT AS oid, current_user AS rolname, false AS rolsuper, true AS rolcanlogin,
           false AS rolcreatedb, false AS rolcreaterole, -1 AS rolconnlimit;
CREATE TEMP VIEW sluice_pg_user AS
    SELECT current_user AS usename, 10::BIGINT AS usesysid, false AS usesuper;
-- Features the warehouse has none of: empty, with PostgreSQL's columns.
CREATE TEMP VIEW sluice_pg_policy AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS polname, NULL::BIGINT AS polrelid, NULL::VARCHAR AS polcmd,
           NULL::BOOLEAN AS polpermissive, NULL::BIGINT[] AS polroles, NULL::VARCHAR AS polqual,
           NULL::VARCHAR AS polwithcheck
     WHERE false;
CREATE TEMP VIEW sluice_pg_statistic_ext AS
    SELECT NULL::BIGINT AS oid, NULL::BIGINT AS stxrelid, NULL::VARCHAR AS stxname, NULL::BIGINT AS stxnamespace,
           NULL::INTEGER AS stxstattarget, NULL::VARCHAR[] AS stxkind
     WHERE false;
CREATE TEMP VIEW sluice_pg_publication AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS pubname, NULL::BOOLEAN AS puballtables WHERE false;
CREATE TEMP VIEW sluice_pg_publication_namespace AS
    SELECT NULL::BIGINT AS oid, NULL::BIGINT AS pnpubid, NULL::BIGINT AS pnnspid WHERE false;
CREATE TEMP VIEW sluice_pg_publication_rel AS
    SELECT NULL::BIGINT AS oid, NULL::BIGINT AS prpubid, NULL::BIGINT AS prrelid, NULL::VARCHAR AS prqual,
           NULL::SMALLINT[] AS prattrs
     WHERE false;
CREATE TEMP VIEW sluice_pg_inherits AS
    SELECT NULL::BIGINT AS inhrelid, NULL::BIGINT AS inhparent, NULL::INTEGER AS inhseqno,
           NULL::BOOLEAN AS inhdetachpending
     WHERE false;
CREATE TEMP VIEW sluice_pg_trigger AS
    SELECT NULL::BIGINT AS oid, NULL::BIGINT AS tgrelid, NULL::VARCHAR AS tgname, NULL::BOOLEAN AS tgisinternal,
           NULL::VARCHAR AS tgenabled
     WHERE false;
CREATE TEMP VIEW sluice_pg_rewrite AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS rulename, NULL::BIGINT AS ev_class WHERE false;
CREATE TEMP VIEW sluice_pg_foreign_table AS
    SELECT NULL::BIGINT AS ftrelid, NULL::BIGINT AS ftserver, NULL::VARCHAR[] AS ftoptions WHERE false;
CREATE TEMP VIEW sluice_pg_partitioned_table AS
    SELECT NULL::BIGINT AS partrelid, NULL::VARCHAR AS partstrat WHERE false;
CREATE TEMP VIEW sluice_pg_extension AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS extname, NULL::VARCHAR AS extversion WHERE false;
CREATE TEMP VIEW sluice_pg_matviews AS
    SELECT NULL::VARCHAR AS schemaname, NULL::VARCHAR AS matviewname WHERE false;
CREATE TEMP VIEW sluice_pg_opclass AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS opcname WHERE false;
CREATE TEMP VIEW sluice_pg_operator AS
    SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS oprname WHERE false;
