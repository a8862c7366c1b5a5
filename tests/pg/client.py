"""A Postgres client of the sysql agent, with psycopg 3, for tests/pg.rs.

    client.py SCENARIO CONNINFO [ARGS...]

prints one JSON document on stdout. Scenarios:

    params COMM PATTERN      count(*) and min(ts) of opens by comm and path,
                             with parameters, binary results (extended protocol)
    grafana FROM TO PORT     the SQL Grafana's PostgreSQL data source sends:
                             discovery, a panel counting connections to PORT,
                             and every panel of docs/grafana-dashboard.json,
                             with its macros expanded for the range FROM..TO
    refused                  connects, and says why it was refused
    many N SQL               N connections at once, each running SQL
    setup                    the time to connect and answer SELECT 1
"""

import json
import os
import re
import sys
import threading
import time

import psycopg


def described(cur):
    return [[d.name, d.type_code] for d in cur.description]


def plain(v):
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return str(v)


def rows(cur):
    return [[plain(v) for v in r] for r in cur.fetchall()]


def params(conninfo, comm, pattern):
    with psycopg.connect(conninfo) as c:
        cur = c.cursor(binary=True)
        cur.execute(
            "SELECT count(*) AS n, min(ts) AS first FROM opens WHERE comm = %s AND path LIKE %s",
            [comm, pattern],
        )
        out = {"columns": described(cur), "rows": rows(cur)}
        # a parameter the statement types (an int8 column), sent in binary
        cur.execute("SELECT count(*) FROM opens WHERE comm = %s AND pid > %b", [comm, 0])
        out["binary_param"] = rows(cur)
        return out


# Grafana's test of a schema being on the search path, as it sends it
IN_SEARCH_PATH = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""

TABLES = f"""SELECT
    CASE WHEN {IN_SEARCH_PATH}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {IN_SEARCH_PATH} THEN 0 ELSE 1 END, 1"""

COLUMNS = f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('TABLE'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('TABLE'))[1]
          AND quote_ident(table_name) = (parse_ident('TABLE'))[2]
        ELSE quote_ident(table_name) = 'TABLE'
          AND {IN_SEARCH_PATH}
      END"""


DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grafana-dashboard.json")


def expand(sql, frm, to):
    """Grafana's macros of the PostgreSQL data source, as it expands them."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m[1]} BETWEEN '{frm}' AND '{to}'", sql)

    def group(m):
        column, interval = m[1], m[2]
        seconds = int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600}[interval[-1]]
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'

    return re.sub(r"\$__timeGroupAlias\((\w+),\s*'(\w+)'\)", group, sql)


def grafana(conninfo, frm, to, port):
    queries = {
        "version": "SELECT current_setting('server_version_num')::int/100 as version",
        "timescaledb": "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
        "tables": TABLES,
        "columns": COLUMNS.replace("TABLE", "public.connects"),
        "connections": expand(
            "SELECT $__timeGroupAlias(ts, '10s'), comm AS metric, count(*) AS value FROM connects "
            f"WHERE $__timeFilter(ts) AND protocol = 'tcp' AND ret = 0 AND dport = {port} GROUP BY 1, 2 ORDER BY 1",
            frm,
            to,
        ),
    }
    with open(DASHBOARD) as f:
        for panel in json.load(f)["panels"]:
            for target in panel["targets"]:
                queries["panel: " + panel["title"]] = expand(target["rawSql"], frm, to)
    out = {}
    # Grafana's backend: the extended protocol, binary results, autocommit
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute("-- ping")
        for name, sql in queries.items():
            cur = c.cursor(binary=True)
            cur.execute(sql)
            out[name] = {"columns": described(cur), "rows": rows(cur)}
    return out


def refused(conninfo):
    try:
        psycopg.connect(conninfo, connect_timeout=10).close()
        return {"refused": None}
    except psycopg.Error as e:
        return {"refused": str(e)}


def many(conninfo, n, sql):
    answers, errors = [None] * n, []
    start = threading.Barrier(n)

    def one(i):
        try:
            with psycopg.connect(conninfo) as c:
                start.wait(timeout=60)
                answers[i] = rows(c.execute(sql))
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"answers": answers, "errors": errors}


def setup(conninfo):
    times = []
    for _ in range(10):
        t = time.monotonic()
        with psycopg.connect(conninfo) as c:
            c.execute("SELECT 1").fetchall()
        times.append(time.monotonic() - t)
    times.sort()
    return {"median_s": times[len(times) // 2], "max_s": times[-1]}


def main():
    scenario, conninfo, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if scenario == "params":
        out = params(conninfo, *args)
    elif scenario == "grafana":
        out = grafana(conninfo, *args)
    elif scenario == "refused":
        out = refused(conninfo)
    elif scenario == "many":
        out = many(conninfo, int(args[0]), args[1])
    elif scenario == "setup":
        out = setup(conninfo)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
