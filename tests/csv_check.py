"""CRM import check: the list CSVs load with Python's strict csv reader and with DuckDB's
read_csv with explicit column types. Usage: csv_check.py OUTPUT_ROOT DATE"""
import csv
import sys

import duckdb

root, date = sys.argv[1], sys.argv[2]
columns = {
    "ambassador_candidates": {
        "dt": "DATE", "customer_id": "VARCHAR", "service_center_id": "VARCHAR", "advisor_id": "VARCHAR",
        "p_refer": "DOUBLE", "center_rank": "INTEGER", "nps_last": "INTEGER", "visits_365d": "INTEGER",
        "eligible_conversions": "INTEGER", "tier": "VARCHAR", "rule_qualified": "BOOLEAN",
        "model_candidate": "BOOLEAN", "reasons": "VARCHAR",
    },
    "churn_alerts": {
        "dt": "DATE", "customer_id": "VARCHAR", "service_center_id": "VARCHAR", "advisor_id": "VARCHAR",
        "p_churn": "DOUBLE", "days_since_last_visit": "INTEGER", "revenue_365d": "DECIMAL(18,2)",
        "value_at_risk": "DOUBLE", "center_rank": "INTEGER", "reasons": "VARCHAR", "suggested_action": "VARCHAR",
    },
}
for name, cols in columns.items():
    path = f"{root}/exports/{name}/dt={date}/{name}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        header = next(reader)
        assert header == list(cols), f"{name}: header {header} != {list(cols)}"
        rows = list(reader)
        assert all(len(r) == len(header) for r in rows), f"{name}: ragged rows"
    types = ", ".join(f"'{c}': '{t}'" for c, t in cols.items())
    n = duckdb.sql(
        f"SELECT count(*) FROM read_csv('{path}', header = true, delim = ',', quote = '\"', columns = {{{types}}}, auto_detect = false)"
    ).fetchall()[0][0]
    assert n == len(rows), f"{name}: duckdb read {n} rows, csv {len(rows)}"
    print(f"{name}: {n} rows load strictly")
print("csv ok")
