// The analyst endpoint as pgJDBC sees it (the driver of DBeaver, DataGrip, Metabase,
// Tableau and most JVM tools): DatabaseMetaData, prepared statements, result
// metadata, every fixture type read and bound, and Statement.cancel().
//
// Run with Java 17's single-file source launcher and the jar deploy/dev/clients.sh
// fetches, against an endpoint serving the client_orders fixture, with the
// connection settings in libpq's environment variables (PGHOST, PGPORT, PGUSER,
// PGPASSWORD, PGDATABASE; PGSSLMODE when set is passed on as pgJDBC's sslmode):
//
//     java -cp "$SLUICE_CLIENTS/java/postgresql.jar" analytics/tests/clients/ClientCheck.java
//
// Prints "ok <what>: <value>" per check; the first failing check prints
// "FAIL <what>: expected X, got Y" to stderr and exits 1. With
// SLUICE_CLIENT_CHECK_ALL=1 every check runs and the failures are counted instead.
//
// Everything but the catalog runs twice: with pgJDBC's defaults (statements used
// fewer than prepareThreshold = 5 times: text results) and with
// prepareThreshold=-1, which server-prepares every statement and asks for binary
// results for the types pgJDBC reads in binary (and sends binary parameters).

import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Array;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.postgresql.util.PGInterval;
import org.postgresql.util.PGobject;

public class ClientCheck {
    static final boolean KEEP_GOING = "1".equals(System.getenv("SLUICE_CLIENT_CHECK_ALL"));
    /** SLUICE_CLIENT_CHECK_REFERENCE=postgres: the same checks against PostgreSQL
     * itself, over the fixture in PostgreSQL's types (HUGEINT → numeric, STRUCT →
     * json, BLOB → bytea): the expected values are what pgJDBC gives there. */
    static final boolean REFERENCE = "postgres".equals(System.getenv("SLUICE_CLIENT_CHECK_REFERENCE"));
    static String driver = "java (pgJDBC)";
    static int passed = 0;
    static int failed = 0;

    static final class Failed extends RuntimeException {
        Failed() {
            super(null, null, false, false);
        }
    }

    static void fail(String what, Object expected, Object got) {
        failed++;
        System.err.println("FAIL " + what + ": expected " + expected + ", got " + got);
        System.err.flush();
        if (!KEEP_GOING) {
            System.err.println(driver + ": " + passed + " passed, " + failed + " failed");
            System.exit(1);
        }
        throw new Failed();
    }

    static void ok(String what, Object seen) {
        passed++;
        System.out.println("ok " + what + ": " + seen);
        System.out.flush();
    }

    static void check(String what, Object expected, Object got) {
        if (!same(expected, got)) {
            fail(what, show(expected), show(got));
        }
        ok(what, show(got));
    }

    /** Equal and of the same class; arrays and BigDecimals (scale included) too. */
    static boolean same(Object a, Object b) {
        if (a == null || b == null) {
            return a == b;
        }
        if (a instanceof List && b instanceof List) {
            return a.equals(b);
        }
        if (a.getClass() != b.getClass()) {
            return false;
        }
        if (a instanceof byte[]) {
            return Arrays.equals((byte[]) a, (byte[]) b);
        }
        if (a instanceof Object[]) {
            return Arrays.deepEquals((Object[]) a, (Object[]) b);
        }
        if (a instanceof BigDecimal) {
            return ((BigDecimal) a).scale() == ((BigDecimal) b).scale() && a.equals(b);
        }
        return a.equals(b);
    }

    static String show(Object v) {
        if (v == null) {
            return "null";
        }
        String s;
        if (v instanceof byte[]) {
            StringBuilder hex = new StringBuilder("0x");
            for (byte x : (byte[]) v) {
                hex.append(String.format("%02x", x));
            }
            s = hex.toString();
        } else if (v instanceof Object[]) {
            s = Arrays.deepToString((Object[]) v);
        } else if (v instanceof String) {
            s = "\"" + v + "\"";
        } else {
            s = v.toString();
        }
        return s + " (" + v.getClass().getSimpleName() + ")";
    }

    interface Check {
        void run() throws Exception;
    }

    /** Runs one group of checks; a driver error fails it with the error's text. */
    static void attempt(String what, Check check) {
        try {
            check.run();
        } catch (Failed e) {
            // counted
        } catch (Exception e) {
            String detail = e.getClass().getSimpleName() + ": " + e.getMessage();
            if (e instanceof SQLException) {
                detail += " [SQLState " + ((SQLException) e).getSQLState() + "]";
            }
            try {
                fail(what, "no error", detail.replace("\n", " | "));
            } catch (Failed counted) {
                // counted
            }
        }
    }

    static String env(String name, String fallback) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? fallback : v;
    }

    static Connection connect(String extra) throws SQLException {
        String url = "jdbc:postgresql://" + env("PGHOST", "localhost") + ":" + env("PGPORT", "5432")
                + "/" + env("PGDATABASE", env("PGUSER", "postgres")) + extra;
        Properties props = new Properties();
        props.setProperty("user", env("PGUSER", System.getProperty("user.name")));
        if (System.getenv("PGPASSWORD") != null) {
            props.setProperty("password", System.getenv("PGPASSWORD"));
        }
        if (System.getenv("PGSSLMODE") != null) {
            props.setProperty("sslmode", System.getenv("PGSSLMODE"));
        }
        if (System.getenv("PGSSLROOTCERT") != null) {
            props.setProperty("sslrootcert", System.getenv("PGSSLROOTCERT"));
        }
        props.setProperty("ApplicationName", "sluice-client-check");
        return DriverManager.getConnection(url, props);
    }

    // ---- The fixture, as pgJDBC gives the equivalent PostgreSQL types. ----

    static final String[] COLUMNS = {
        "id", "line", "amount", "big", "order_id", "placed_at", "took", "tags",
        "address", "feeling", "raw", "paid", "weight", "note", "day",
    };

    /** What getObject gives per column and row (ORDER BY id, line). The list is
     * checked apart (a java.sql.Array of String, or JSON text), and so is the
     * struct (json: a PGobject of type json whose JSON is the struct's). */
    static Object[][] rows() throws SQLException {
        return new Object[][] {
            {
                1, 1, new BigDecimal("12.50"), new BigDecimal("170141183460469231731687303715884105727"),
                UUID.fromString("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"),
                OffsetDateTime.of(2024, 5, 1, 10, 0, 0, 0, ZoneOffset.UTC),
                new PGInterval(0, 0, 1, 2, 3, 0), List.of("a", "b"), json("Oslo", 150L), "happy",
                new byte[] {(byte) 0xde, (byte) 0xad, (byte) 0xbe, (byte) 0xef}, true, 1.5, "n\u00e9e",
                LocalDate.of(2024, 5, 1),
            },
            {
                1, 2, new BigDecimal("-7.25"), new BigDecimal("-5"),
                UUID.fromString("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f71"),
                OffsetDateTime.of(2024, 5, 2, 11, 30, 0, 123_456_000, ZoneOffset.UTC),
                new PGInterval(0, 3, 0, 0, 0, 0), List.of(), json(null, 1L), "sad", new byte[0], false,
                -0.5, "", LocalDate.of(1999, 12, 31),
            },
            {2, 1, null, null, null, null, null, null, null, null, null, null, null, null, null},
        };
    }

    static Map<String, Object> json(String city, Long zip) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("city", city);
        m.put("zip", zip);
        return m;
    }

    /** The DuckDB type each column is bound as in the parameter round trip. */
    static String cast(String column) {
        switch (column) {
            case "id": case "line": return "INTEGER";
            case "amount": return "DECIMAL(12,2)";
            case "big": return REFERENCE ? "NUMERIC" : "HUGEINT";
            case "order_id": return "UUID";
            case "placed_at": return "TIMESTAMPTZ";
            case "took": return "INTERVAL";
            case "tags": return "VARCHAR[]";
            case "address": return REFERENCE ? "JSON" : "STRUCT(city VARCHAR, zip INTEGER)";
            case "feeling": return "mood";
            case "raw": return REFERENCE ? "BYTEA" : "BLOB";
            case "paid": return "BOOLEAN";
            case "weight": return "DOUBLE PRECISION";
            case "note": return "VARCHAR";
            case "day": return "DATE";
            default: throw new IllegalArgumentException(column);
        }
    }

    /** The (type name, java.sql.Types) pgJDBC reports for each column of the
     * equivalent PostgreSQL table, in DatabaseMetaData.getColumns and in
     * ResultSetMetaData; several where more than one PostgreSQL type is the
     * reasonable equivalent (varchar or text, text[] or json, the enum or text). */
    static final Map<String, List<Object[]>> TYPES = new LinkedHashMap<>();

    static {
        type("id", "int4", Types.INTEGER);
        type("line", "int4", Types.INTEGER);
        type("amount", "numeric", Types.NUMERIC);
        type("big", "numeric", Types.NUMERIC);
        type("order_id", "uuid", Types.OTHER);
        type("placed_at", "timestamptz", Types.TIMESTAMP);
        type("took", "interval", Types.OTHER);
        type("tags", "_varchar", Types.ARRAY, "_text", Types.ARRAY, "json", Types.OTHER, "jsonb", Types.OTHER);
        type("address", "json", Types.OTHER, "jsonb", Types.OTHER);
        type("feeling", "mood", Types.VARCHAR, "text", Types.VARCHAR, "varchar", Types.VARCHAR);
        type("raw", "bytea", Types.BINARY);
        type("paid", "bool", Types.BIT);
        type("weight", "float8", Types.DOUBLE);
        type("note", "varchar", Types.VARCHAR, "text", Types.VARCHAR);
        type("day", "date", Types.DATE);
    }

    static void type(String column, Object... pairs) {
        List<Object[]> accepted = new ArrayList<>();
        for (int i = 0; i < pairs.length; i += 2) {
            accepted.add(new Object[] {pairs[i], pairs[i + 1]});
        }
        TYPES.put(column, accepted);
    }

    static void checkType(String what, String column, String name, int sqlType) {
        String seen = name + " / java.sql.Types " + sqlType;
        for (Object[] t : TYPES.get(column)) {
            if (t[0].equals(name) && (int) t[1] == sqlType) {
                ok(what, seen);
                return;
            }
        }
        StringBuilder expected = new StringBuilder();
        for (Object[] t : TYPES.get(column)) {
            expected.append(expected.length() == 0 ? "" : " or ").append(t[0]).append(" / java.sql.Types ").append(t[1]);
        }
        fail(what, expected, seen);
    }

    // ---- Nested values. ----

    /** A list: a java.sql.Array of String (text[]), or JSON text of the list. */
    static void checkList(String what, List<?> expected, ResultSet rs, int i) throws SQLException {
        Object got = rs.getObject(i);
        if (got instanceof Array) {
            Object items = ((Array) got).getArray();
            if (!(items instanceof String[])) {
                fail(what, "a String[] " + expected, show(items));
            }
            check(what, expected, List.of((Object[]) items));
            return;
        }
        checkJson(what, expected, got);
    }

    /** JSON text (a PGobject of type json, or a String) that parses to `expected`. */
    static void checkJson(String what, Object expected, Object got) {
        String text;
        if (got instanceof PGobject) {
            text = ((PGobject) got).getValue();
        } else if (got instanceof String) {
            text = (String) got;
        } else {
            fail(what, "JSON text of " + expected, show(got));
            return;
        }
        Object parsed;
        try {
            parsed = new Json(text).parse();
        } catch (IllegalArgumentException e) {
            fail(what, "JSON text of " + expected, "\"" + text + "\", not JSON (" + e.getMessage() + ")");
            return;
        }
        if (!Objects.equals(expected, parsed)) {
            fail(what, "JSON text of " + expected, "\"" + text + "\"");
        }
        ok(what, "\"" + text + "\" (" + got.getClass().getSimpleName() + ")");
    }

    /** Just enough JSON: objects, arrays, strings, integers, true/false/null. */
    static final class Json {
        final String s;
        int i = 0;

        Json(String s) {
            this.s = s;
        }

        Object parse() {
            Object v = value();
            space();
            if (i != s.length()) {
                throw new IllegalArgumentException("trailing text at " + i);
            }
            return v;
        }

        void space() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        void expect(char c) {
            space();
            if (i >= s.length() || s.charAt(i) != c) {
                throw new IllegalArgumentException("expected '" + c + "' at " + i);
            }
            i++;
        }

        /** Steps past an opening bracket, and past `close` too when it follows: an empty object or array. */
        boolean opensEmpty(char close) {
            i++;
            space();
            if (s.charAt(i) == close) {
                i++;
                return true;
            }
            return false;
        }

        /** After the last item of an object or array: the separator just read must be `close`. */
        void closedBy(char close) {
            if (s.charAt(i - 1) != close) {
                throw new IllegalArgumentException("expected '" + close + "' at " + (i - 1));
            }
        }

        Object value() {
            space();
            if (i >= s.length()) {
                throw new IllegalArgumentException("unexpected end");
            }
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                if (opensEmpty('}')) {
                    return m;
                }
                do {
                    space();
                    String key = string();
                    expect(':');
                    m.put(key, value());
                    space();
                } while (s.charAt(i++) == ',');
                closedBy('}');
                return m;
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                if (opensEmpty(']')) {
                    return l;
                }
                do {
                    l.add(value());
                    space();
                } while (s.charAt(i++) == ',');
                closedBy(']');
                return l;
            }
            if (c == '"') {
                return string();
            }
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "-0123456789".indexOf(s.charAt(i)) >= 0) {
                i++;
            }
            if (start == i) {
                throw new IllegalArgumentException("unexpected '" + c + "' at " + i);
            }
            return Long.parseLong(s.substring(start, i));
        }

        String string() {
            if (i >= s.length() || s.charAt(i) != '"') {
                throw new IllegalArgumentException("expected a string at " + i);
            }
            StringBuilder b = new StringBuilder();
            i++;
            while (s.charAt(i) != '"') {
                char c = s.charAt(i++);
                if (c == '\\') {
                    char e = s.charAt(i++);
                    b.append(e == 'n' ? '\n' : e == 't' ? '\t' : e);
                } else {
                    b.append(c);
                }
            }
            i++;
            return b.toString();
        }
    }

    // ---- The checks. ----

    /** The checks that run in both the text and the binary transfer `mode`. */
    static void roundTrips(Connection conn, String mode) {
        prepared(conn, mode);
        resultMetadata(conn, mode);
        readRows(conn, mode);
        bindRows(conn, mode);
        cancel(conn, mode);
    }

    static void catalog(Connection conn) {
        attempt("getSchemas", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) {
                    schemas.add(rs.getString("TABLE_SCHEM"));
                }
            }
            if (!schemas.contains("main")) {
                fail("getSchemas", "a list with main", schemas);
            }
            ok("getSchemas has main", schemas);
        });
        attempt("getTables", () -> {
            DatabaseMetaData md = conn.getMetaData();
            for (String[] t : new String[][] {{"client_orders", "TABLE"}, {"paid_client_orders", "VIEW"}}) {
                List<String> found = new ArrayList<>();
                try (ResultSet rs = md.getTables(null, "main", t[0], null)) {
                    while (rs.next()) {
                        found.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + " "
                                + rs.getString("TABLE_TYPE"));
                    }
                }
                check("getTables " + t[0], List.of("main." + t[0] + " " + t[1]), found);
            }
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "main", "%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            if (!tables.contains("client_orders") || tables.contains("paid_client_orders")) {
                fail("getTables of type TABLE", "client_orders and no view", tables);
            }
            ok("getTables of type TABLE has client_orders, not the view", tables.size() + " tables");
        });
        attempt("getColumns", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> names = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "main", "client_orders", "%")) {
                while (rs.next()) {
                    String column = rs.getString("COLUMN_NAME");
                    names.add(column);
                    if (!TYPES.containsKey(column)) {
                        continue;
                    }
                    String what = "getColumns " + column;
                    attempt(what, () -> {
                        checkType(what + " type", column, rs.getString("TYPE_NAME"), rs.getInt("DATA_TYPE"));
                        String nullable = column.equals("id") || column.equals("line") ? "NO" : "YES";
                        check(what + " IS_NULLABLE", nullable, rs.getString("IS_NULLABLE"));
                        if (column.equals("amount")) {
                            check(what + " COLUMN_SIZE", 12, rs.getInt("COLUMN_SIZE"));
                            check(what + " DECIMAL_DIGITS", 2, rs.getInt("DECIMAL_DIGITS"));
                        }
                    });
                }
            }
            check("getColumns names", List.of(COLUMNS), names);
        });
        attempt("getPrimaryKeys", () -> {
            DatabaseMetaData md = conn.getMetaData();
            List<String> key = new ArrayList<>();
            try (ResultSet rs = md.getPrimaryKeys(null, "main", "client_orders")) {
                while (rs.next()) {
                    key.add(rs.getShort("KEY_SEQ") + ":" + rs.getString("COLUMN_NAME"));
                }
            }
            check("getPrimaryKeys (KEY_SEQ:COLUMN_NAME)", List.of("1:id", "2:line"), key);
        });
    }

    static void prepared(Connection conn, String pass) {
        attempt(pass + " PreparedStatement with parameters", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, line, note FROM client_orders "
                            + "WHERE id = ? AND note = ? AND placed_at = ? AND order_id = ? ORDER BY line")) {
                for (int run = 1; run <= 2; run++) {
                    ps.setInt(1, 1);
                    ps.setString(2, "n\u00e9e");
                    ps.setObject(3, OffsetDateTime.of(2024, 5, 1, 10, 0, 0, 0, ZoneOffset.UTC));
                    ps.setObject(4, UUID.fromString("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"));
                    List<String> got = new ArrayList<>();
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            got.add(rs.getInt(1) + "/" + rs.getInt(2) + "/" + rs.getString(3));
                        }
                    }
                    check(pass + " PreparedStatement (int, string, timestamptz, uuid), run " + run,
                            List.of("1/1/n\u00e9e"), got);
                }
                ps.setInt(1, 1);
                ps.setString(2, "n\u00e9e");
                ps.setTimestamp(3, java.sql.Timestamp.from(java.time.Instant.parse("2024-05-01T10:00:00Z")));
                ps.setObject(4, UUID.fromString("0191b2c4-7c5e-7a3b-9f1e-2d3c4b5a6f70"));
                try (ResultSet rs = ps.executeQuery()) {
                    check(pass + " PreparedStatement with setTimestamp finds the row", true, rs.next());
                }
            }
        });
    }

    static void resultMetadata(Connection conn, String pass) {
        attempt(pass + " ResultSetMetaData", () -> {
            try (PreparedStatement ps = conn.prepareStatement("SELECT * FROM client_orders ORDER BY id, line");
                    ResultSet rs = ps.executeQuery()) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> names = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    String column = md.getColumnLabel(i);
                    names.add(column);
                    if (TYPES.containsKey(column)) {
                        String what = pass + " ResultSetMetaData " + column + " type";
                        int c = i;
                        attempt(what, () -> checkType(what, column, md.getColumnTypeName(c), md.getColumnType(c)));
                    }
                }
                check(pass + " ResultSetMetaData column labels", List.of(COLUMNS), names);
                int amount = names.indexOf("amount") + 1;
                attempt(pass + " ResultSetMetaData amount precision/scale", () -> check(
                        pass + " ResultSetMetaData amount precision/scale", "12/2",
                        md.getPrecision(amount) + "/" + md.getScale(amount)));
            }
        });
    }

    /** The value of `column` the way a JDBC user reads that type. */
    static Object read(ResultSet rs, int i, String column) throws SQLException {
        switch (column) {
            case "placed_at": return rs.getObject(i, OffsetDateTime.class);
            case "day": return rs.getObject(i, LocalDate.class);
            case "raw": return rs.getBytes(i);
            case "feeling": case "note": return rs.getString(i);
            default: return rs.getObject(i);
        }
    }

    static void checkValue(String what, String column, Object expected, ResultSet rs, int i) throws SQLException {
        if (expected != null && column.equals("tags")) {
            checkList(what, (List<?>) expected, rs, i);
        } else if (expected != null && column.equals("address")) {
            checkJson(what, expected, rs.getObject(i));
        } else {
            Object got = read(rs, i, column);
            check(what, expected, got);
            if (expected == null) {
                check(what + " wasNull", true, rs.wasNull());
            }
        }
    }

    static void readRows(Connection conn, String pass) {
        attempt(pass + " read of client_orders", () -> {
            Object[][] expected = rows();
            String select = "SELECT " + String.join(", ", COLUMNS) + " FROM client_orders ORDER BY id, line";
            try (PreparedStatement ps = conn.prepareStatement(select); ResultSet rs = ps.executeQuery()) {
                int r = 0;
                while (rs.next()) {
                    if (r >= expected.length) {
                        fail(pass + " read row count", expected.length, "more rows");
                    }
                    for (int c = 0; c < COLUMNS.length; c++) {
                        String what = pass + " read row " + (r + 1) + " " + COLUMNS[c];
                        Object value = expected[r][c];
                        int i = c + 1;
                        String column = COLUMNS[c];
                        attempt(what, () -> checkValue(what, column, value, rs, i));
                    }
                    r++;
                }
                check(pass + " read row count", expected.length, r);
            }
        });
        attempt(pass + " getters", () -> {
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT amount, big, placed_at, day, paid, weight FROM client_orders WHERE id = 1 AND line = 2");
                    ResultSet rs = ps.executeQuery()) {
                check(pass + " a row", true, rs.next());
                check(pass + " getBigDecimal amount", new BigDecimal("-7.25"), rs.getBigDecimal(1));
                check(pass + " getLong big", -5L, rs.getLong(2));
                check(pass + " getTimestamp placed_at (instant)", "2024-05-02T11:30:00.123456Z",
                        rs.getTimestamp(3).toInstant().toString());
                check(pass + " getDate day", java.sql.Date.valueOf("1999-12-31"), rs.getDate(4));
                check(pass + " getBoolean paid", false, rs.getBoolean(5));
                check(pass + " getDouble weight", -0.5, rs.getDouble(6));
            }
        });
    }

    /** Binds `value` the way a JDBC user binds that type. */
    static void bind(Connection conn, PreparedStatement ps, String column, Object value) throws SQLException {
        if (value == null) {
            int type = TYPES.get(column).get(0)[1] instanceof Integer ? (int) TYPES.get(column).get(0)[1] : Types.OTHER;
            ps.setNull(1, type == Types.ARRAY ? Types.VARCHAR : type);
            return;
        }
        switch (column) {
            case "tags":
                ps.setArray(1, conn.createArrayOf("varchar", ((List<?>) value).toArray()));
                break;
            case "address": {
                @SuppressWarnings("unchecked")
                Map<String, Object> m = (Map<String, Object>) value;
                PGobject json = new PGobject();
                json.setType("json");
                json.setValue("{\"city\": " + (m.get("city") == null ? "null" : "\"" + m.get("city") + "\"")
                        + ", \"zip\": " + m.get("zip") + "}");
                ps.setObject(1, json);
                break;
            }
            case "raw":
                ps.setBytes(1, (byte[]) value);
                break;
            case "feeling": case "note":
                ps.setString(1, (String) value);
                break;
            default:
                ps.setObject(1, value);
        }
    }

    static void bindRows(Connection conn, String pass) {
        Object[][] rows;
        try {
            rows = rows();
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
        for (int r = 0; r < rows.length; r++) {
            for (int c = 0; c < COLUMNS.length; c++) {
                String column = COLUMNS[c];
                Object value = rows[r][c];
                String what = pass + " bound row " + (r + 1) + " " + column;
                attempt(what, () -> {
                    try (PreparedStatement ps = conn.prepareStatement(
                            "SELECT CAST(? AS " + cast(column) + ") AS v")) {
                        bind(conn, ps, column, value);
                        try (ResultSet rs = ps.executeQuery()) {
                            if (!rs.next()) {
                                fail(what, "one row", "none");
                            }
                            checkValue(what, column, value, rs, 1);
                        }
                    }
                });
            }
        }
    }

    static void cancel(Connection conn, String pass) {
        attempt(pass + " cancel", () -> {
            try (Statement st = conn.createStatement()) {
                long[] cancelledAt = {0};
                CompletableFuture<Void> canceller = CompletableFuture.runAsync(() -> {
                    try {
                        Thread.sleep(1000);
                        cancelledAt[0] = System.nanoTime();
                        st.cancel();
                    } catch (Exception e) {
                        throw new IllegalStateException(e);
                    }
                });
                long started = System.nanoTime();
                SQLException error = null;
                try {
                    st.executeQuery(REFERENCE
                            ? "SELECT count(*) FROM generate_series(1::bigint, 2000000000000) t(x) WHERE x % 7 = 3"
                            : "SELECT count(*) FROM range(2000000000000) t(x) WHERE x % 7 = 3");
                } catch (SQLException e) {
                    error = e;
                }
                long ended = System.nanoTime();
                canceller.get(10, TimeUnit.SECONDS);
                if (error == null) {
                    fail(pass + " cancel", "SQLException 57014", "the query finished after "
                            + TimeUnit.NANOSECONDS.toMillis(ended - started) + " ms");
                }
                check(pass + " cancel SQLState", "57014", error.getSQLState());
                long after = TimeUnit.NANOSECONDS.toMillis(ended - cancelledAt[0]);
                if (after > 5000) {
                    fail(pass + " cancel took effect", "within 5000 ms of Statement.cancel()", after + " ms");
                }
                ok(pass + " cancel took effect", after + " ms after Statement.cancel(): " + error.getMessage());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 1")) {
                rs.next();
                check(pass + " the same connection after the cancel: SELECT 1", 1, rs.getInt(1));
            }
        });
    }

    public static void main(String[] args) throws Exception {
        driver = "java (pgJDBC " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ")";
        // The session's time zone is UTC; the JVM's must not matter, but make
        // java.sql.Date/Timestamp comparisons independent of the machine's.
        java.util.TimeZone.setDefault(java.util.TimeZone.getTimeZone("UTC"));
        try (Connection conn = connect("")) {
            ok("connect", conn.getMetaData().getDatabaseProductName() + " "
                    + conn.getMetaData().getDatabaseProductVersion());
            catalog(conn);
            roundTrips(conn, "text");
        } catch (SQLException e) {
            fail("connect", "a connection", e.getMessage() + " [SQLState " + e.getSQLState() + "]");
        }
        try (Connection conn = connect("?prepareThreshold=-1")) {
            roundTrips(conn, "binary");
        } catch (SQLException e) {
            fail("connect (prepareThreshold=-1)", "a connection", e.getMessage() + " [SQLState " + e.getSQLState() + "]");
        }
        System.out.println(driver + ": " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
