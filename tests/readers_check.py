"""Every published table of a run, read by folder with partition discovery the way analysts do,
with five readers: pandas, pyarrow, polars, DuckDB and Spark. Each read must succeed, see `dt` as a
column, and count the rows the manifest says. Usage: readers_check.py OUTPUT_ROOT MANIFEST_JSON"""
import json
import os
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds

root, manifest_path = sys.argv[1], sys.argv[2]
manifest = json.load(open(manifest_path))
tables = {}
for t in manifest["tables"]:
    folder = t["path"].rsplit("/dt=", 1)[0]
    tables[folder] = t["rows"]

os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--conf spark.ui.enabled=false pyspark-shell")
from pyspark.sql import SparkSession  # noqa: E402

spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")

readers = {
    "pandas": lambda f: (lambda d: (len(d), "dt" in d.columns))(pd.read_parquet(f)),
    "pyarrow": lambda f: (lambda d: (d.count_rows(), "dt" in d.schema.names))(
        ds.dataset(f, format="parquet", partitioning="hive")
    ),
    "polars": lambda f: (lambda d: (d.height, "dt" in d.columns))(
        pl.scan_parquet(f + "/**/*.parquet", hive_partitioning=True).collect()
    ),
    "duckdb": lambda f: (
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{f}/*/*.parquet', hive_partitioning = true)").fetchall()[0][0],
        "dt" in duckdb.sql(f"SELECT * FROM read_parquet('{f}/*/*.parquet', hive_partitioning = true) LIMIT 0").columns,
    ),
    "spark": lambda f: (lambda d: (d.count(), "dt" in d.columns))(spark.read.parquet(f)),
}
failures, reads = [], 0
for folder, rows in sorted(tables.items()):
    path = f"{root}/{folder}"
    for name, read in readers.items():
        reads += 1
        try:
            n, has_dt = read(path)
        except Exception as e:  # a failed read is a finding, not a crash of the check
            failures.append(f"{name} {folder}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            continue
        if n != rows or not has_dt:
            failures.append(f"{name} {folder}: {n} rows (manifest {rows}), dt column: {has_dt}")
spark.stop()
print(f"{reads} reads of {len(tables)} tables, {len(failures)} failures")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print("every reader reads every table")
