"""An analyst's check with an independent engine: DuckDB reads every published table of a run
the way analysts do (hive partitioning over the dt= folders) and must find the contract's
columns and types. Usage: analyst_check.py OUTPUT_ROOT EXPECTED_JSON
EXPECTED_JSON maps folder -> [[column, duckdb type], ...]."""
import json
import sys

import duckdb

root, expected_path = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_path))
problems = []
for folder, columns in sorted(expected.items()):
    rel = f"{root}/{folder}/*/*.parquet"
    rows = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{rel}', hive_partitioning = true)").fetchall()
    found = [(r[0], r[1]) for r in rows]
    want = [tuple(c) for c in columns]
    # dt is never inside the files: it comes from the dt= folder, after the files' columns.
    want = [c for c in want if c[0] != "dt"] + [("dt", "DATE")]
    if found != want:
        problems.append(f"{folder}: duckdb sees {found}, the contract says {want}")
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{rel}', hive_partitioning = true)").fetchall()[0][0]
    print(f"{folder}: {n} rows, {len(found)} columns")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("all tables match their contracts")
