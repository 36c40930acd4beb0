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
    (SELECT oid FROM pg_catalog.pg_proc WHERE proname = CAST(x AS VARCHAR) ORDER BY oid LIMIT 1),
    -- array_in, which sluice_pg_type.typinput names for every array type
    CASE WHEN CAST(x AS VARCHAR) IN ('array_in', 'pg_catalog.array_in') THEN 750 END);
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
    WHEN 114 THEN 'json' WHEN 1000 THEN 'boolean[]' WHEN 1001 THEN 'bytea[]'
    WHEN 1005 THEN 'smallint[]' WHEN 1007 THEN 'integer[]' WHEN 1009 THEN 'text[]'
    WHEN 1016 THEN 'bigint[]' WHEN 1021 THEN 'real[]' WHEN 1022 THEN 'double precision[]'
    WHEN 1115 THEN 'timestamp without time zone[]' WHEN 1182 THEN 'date[]'
    WHEN 1183 THEN 'time without time zone[]' WHEN 1185 THEN 'timestamp with time zone[]'
    WHEN 1187 THEN 'interval[]' WHEN 1231 THEN 'numeric[]' WHEN 2951 THEN 'uuid[]'
    WHEN 1700 THEN 'numeric' || CASE WHEN typemod >= 4
        THEN '(' || ((typemod - 4) >> 16) || ',' || ((typemod - 4) & 65535) || ')' ELSE '' END
    ELSE (SELECT typname FROM pg_catalog.pg_type WHERE oid = type_oid LIMIT 1) END;
-- LIKE as PostgreSQL reads it: `\` escapes the next character (catalog.rs
-- routes `~~`, `!~~`, `~~*` and `!~~*` here).
CREATE TEMP MACRO sluice_like(s, p) AS like_escape(s, p, '\');
CREATE TEMP MACRO sluice_not_like(s, p) AS NOT like_escape(s, p, '\');
CREATE TEMP MACRO sluice_ilike(s, p) AS ilike_escape(s, p, '\');
CREATE TEMP MACRO sluice_not_ilike(s, p) AS NOT ilike_escape(s, p, '\');
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
-- A column's type as the oid of the type the endpoint announces for it in its
-- results (types.rs): DuckDB 2.0.0's pg_attribute gives DuckDB's own type id
-- (13 for INTEGER) and knows no arrays, so the type comes from duckdb_columns'
-- name for it. VARCHAR is text; a list of a scalar type is that type's array;
-- a struct, a map and a list of nested values are json; unsigned and huge
-- integers are widened. A DECIMAL's typmod is PostgreSQL's, ((p << 16) | s) + 4.
CREATE TEMP MACRO sluice_type_oid(data_type) AS CASE
    WHEN data_type LIKE 'STRUCT(%' OR data_type LIKE 'MAP(%' OR data_type LIKE 'UNION(%' THEN 114
    WHEN data_type LIKE '%[]' THEN coalesce(CASE regexp_replace(data_type, '(\[\d*\])$', '')
        WHEN 'BOOLEAN' THEN 1000 WHEN 'TINYINT' THEN 1005 WHEN 'SMALLINT' THEN 1005
        WHEN 'UTINYINT' THEN 1005 WHEN 'INTEGER' THEN 1007 WHEN 'USMALLINT' THEN 1007
        WHEN 'BIGINT' THEN 1016 WHEN 'UINTEGER' THEN 1016 WHEN 'HUGEINT' THEN 1231
        WHEN 'UBIGINT' THEN 1231 WHEN 'UHUGEINT' THEN 1231 WHEN 'FLOAT' THEN 1021
        WHEN 'DOUBLE' THEN 1022 WHEN 'DATE' THEN 1182 WHEN 'TIME' THEN 1183
        WHEN 'TIMESTAMP' THEN 1115 WHEN 'TIMESTAMP WITH TIME ZONE' THEN 1185
        WHEN 'INTERVAL' THEN 1187 WHEN 'UUID' THEN 2951 WHEN 'BLOB' THEN 1001
        WHEN 'VARCHAR' THEN 1009 END,
        CASE WHEN data_type LIKE 'DECIMAL(%' AND data_type NOT LIKE '%[]%[]' THEN 1231
             WHEN data_type LIKE '%[]%[]' OR data_type LIKE '%(%' THEN 114 ELSE 1009 END)
    WHEN data_type LIKE 'DECIMAL(%' THEN 1700
    ELSE coalesce(CASE data_type
        WHEN 'BOOLEAN' THEN 16 WHEN 'TINYINT' THEN 21 WHEN 'SMALLINT' THEN 21 WHEN 'UTINYINT' THEN 21
        WHEN 'INTEGER' THEN 23 WHEN 'USMALLINT' THEN 23 WHEN 'BIGINT' THEN 20 WHEN 'UINTEGER' THEN 20
        WHEN 'HUGEINT' THEN 1700 WHEN 'UBIGINT' THEN 1700 WHEN 'UHUGEINT' THEN 1700
        WHEN 'FLOAT' THEN 700 WHEN 'DOUBLE' THEN 701 WHEN 'DATE' THEN 1082 WHEN 'TIME' THEN 1083
        WHEN 'TIMESTAMP' THEN 1114 WHEN 'TIMESTAMP_S' THEN 1114 WHEN 'TIMESTAMP_MS' THEN 1114
        WHEN 'TIMESTAMP_NS' THEN 1114 WHEN 'TIMESTAMP WITH TIME ZONE' THEN 1184
        WHEN 'INTERVAL' THEN 1186 WHEN 'UUID' THEN 2950 WHEN 'BLOB' THEN 17 WHEN 'JSON' THEN 114
        END, 25) END;
CREATE TEMP VIEW sluice_pg_attribute AS
    SELECT a.* REPLACE (
           coalesce(sluice_type_oid(c.data_type), 25) AS atttypid,
           CASE WHEN c.data_type LIKE 'DECIMAL(%' AND c.data_type NOT LIKE '%[]'
                THEN ((c.numeric_precision << 16) | c.numeric_scale) + 4 ELSE -1 END AS atttypmod)
      FROM pg_catalog.pg_attribute a
      LEFT JOIN duckdb_columns() c ON c.table_oid = a.attrelid AND c.column_name = a.attname;
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

-- pg_type with the types the endpoint announces that DuckDB's lacks (text,
-- json, the arrays), every built-in type (oid below 16384, as in PostgreSQL) in
-- pg_catalog's namespace (DuckDB puts them in system.main), and the array links
-- (typelem, typarray) drivers follow.
CREATE TEMP VIEW sluice_pg_type AS
    WITH catalog AS (
        SELECT oid FROM duckdb_schemas() WHERE database_name = 'system' AND schema_name = 'pg_catalog'),
    added(oid, typname, typlen, typcategory, typelem, typarray) AS (VALUES
        (25, 'text', -1, 'S', 0, 1009), (114, 'json', -1, 'U', 0, 199),
        (199, '_json', -1, 'A', 114, 0), (1000, '_bool', -1, 'A', 16, 0),
        (1001, '_bytea', -1, 'A', 17, 0), (1005, '_int2', -1, 'A', 21, 0),
        (1007, '_int4', -1, 'A', 23, 0), (1009, '_text', -1, 'A', 25, 0),
        (1015, '_varchar', -1, 'A', 1043, 0), (1016, '_int8', -1, 'A', 20, 0),
        (1021, '_float4', -1, 'A', 700, 0), (1022, '_float8', -1, 'A', 701, 0),
        (1115, '_timestamp', -1, 'A', 1114, 0), (1182, '_date', -1, 'A', 1082, 0),
        (1183, '_time', -1, 'A', 1083, 0), (1185, '_timestamptz', -1, 'A', 1184, 0),
        (1187, '_interval', -1, 'A', 1186, 0), (1231, '_numeric', -1, 'A', 1700, 0),
        (2951, '_uuid', -1, 'A', 2950, 0))
    SELECT t.oid, t.typname,
           CASE WHEN t.oid < 16384 THEN (SELECT oid FROM catalog) ELSE t.typnamespace END AS typnamespace,
           10::BIGINT AS typowner, t.typlen, t.typbyval, t.typtype, t.typcategory, t.typispreferred,
           true AS typisdefined, ',' AS typdelim, 0::BIGINT AS typrelid, 0::BIGINT AS typelem,
           0::BIGINT AS typinput, 0::BIGINT AS typoutput, 0::BIGINT AS typreceive, 0::BIGINT AS typsend,
           coalesce((SELECT a.oid FROM added a WHERE a.typelem = t.oid LIMIT 1), 0)::BIGINT AS typarray,
           t.typalign, t.typstorage, false AS typnotnull, 0::BIGINT AS typbasetype, -1 AS typtypmod,
           0 AS typndims, 0::BIGINT AS typcollation, NULL::VARCHAR AS typdefault
      FROM pg_catalog.pg_type t
     WHERE t.oid NOT IN (SELECT oid FROM added)
    UNION ALL
    SELECT a.oid::BIGINT, a.typname, (SELECT oid FROM catalog), 10::BIGINT, a.typlen::BIGINT,
           false, 'b', a.typcategory, a.oid = 25, true, ',', 0::BIGINT, a.typelem::BIGINT,
           CASE WHEN a.typelem > 0 THEN 750 ELSE 0 END::BIGINT, 0::BIGINT, 0::BIGINT, 0::BIGINT,
           a.typarray::BIGINT, 'i', 'x', false, 0::BIGINT, -1, CASE WHEN a.typelem > 0 THEN 1 ELSE 0 END,
           CASE WHEN a.oid = 25 THEN 100 ELSE 0 END::BIGINT, NULL::VARCHAR
      FROM added a;
-- Key columns numbered from 1, as attnum is (DuckDB's conkey counts from 0).
CREATE TEMP VIEW sluice_pg_constraint AS
    SELECT * REPLACE (list_transform(conkey, lambda k: k + 1) AS conkey,
                      CASE WHEN contype IN ('p', 'u') THEN oid ELSE conindid END AS conindid)
      FROM pg_catalog.pg_constraint;
-- Indexes: one per primary key or unique constraint (DuckDB has no pg_index),
-- with the key's columns numbered from 1. indexrelid is the constraint's oid,
-- which sluice_pg_constraint gives as conindid.
CREATE TEMP VIEW sluice_pg_index AS
    SELECT c.oid AS indexrelid, c.conrelid AS indrelid, len(c.conkey) AS indnatts,
           len(c.conkey) AS indnkeyatts, true AS indisunique, c.contype = 'p' AS indisprimary,
           false AS indnullsnotdistinct, false AS indisexclusion, true AS indimmediate,
           false AS indisclustered, true AS indisvalid, false AS indcheckxmin, true AS indisready,
           true AS indislive, false AS indisreplident, list_transform(c.conkey, lambda k: k + 1) AS indkey,
           NULL::VARCHAR AS indexprs, NULL::VARCHAR AS indpred
      FROM pg_catalog.pg_constraint c
     WHERE c.contype IN ('p', 'u');
