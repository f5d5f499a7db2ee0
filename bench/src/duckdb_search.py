"""DuckDB side of `bench log-search`: one warm connection over the same
Parquet files our store wrote. Reads JSON requests from stdin, one per line
({"sql": ...}), and answers each with one JSON line: the seconds the query
took inside DuckDB and its rows (for the cross-check)."""

import json
import sys
import time

import duckdb


def main():
    files = json.loads(sys.argv[1])
    threads = int(sys.argv[2])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET TimeZone = 'UTC'")
    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet([{listed}])")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        try:
            rows = con.execute(request["sql"]).fetchall()
        except Exception as e:  # the Rust side reports it with the query
            print(json.dumps({"error": str(e)}), flush=True)
            continue
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "rows": [[str(c) for c in r] for r in rows]}), flush=True)


if __name__ == "__main__":
    main()
