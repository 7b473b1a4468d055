"""Run flywheel's data contracts with datacontract-cli, as another team would.

Usage: datacontract_check.py CONTRACTS_DIR WORK_DIR
WORK_DIR holds `data/` (the inputs a run read) and `out/` (what it published): the contracts'
local server paths (`./data/<input>/**/*.parquet`, `./out/<table>/dt=*/*.parquet`) resolve there.
Run with the Python of datacontract-cli's own venv (it pins its own DuckDB).

1. `datacontract test` on every contract (the CLI, JSON results):
   - published tables: every check passes (type checks of Parquet are "not supported" warnings
     in the tool; flywheel checks types itself before publishing);
   - inputs: the demo generator plants a few bad rows; a check the tool fails must name a field
     that flywheel quarantined rows for (rejects/<input>), and each row rule (`type: sql`) fails
     in the tool exactly when flywheel rejected rows for it.
2. The row rule runs for real: a copy of the visits with one row breaking
   `value_added_within_revenue` makes the tool's sql check fail.
3. `datacontract export sql --dialect postgres` of every contract gives DDL that DuckDB accepts,
   and each published table's rows insert into its table. Known exception: the tool does not
   quote identifiers, and `referred_vs_other` has a column named `group` (an SQL reserved
   word): its DDL is checked to fail for exactly that reason, so the day the tool quotes (or the
   column is renamed) this check says so.
Prints one line per contract; exits 1 with the reasons on any failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import duckdb
import yaml

BIN = os.path.join(os.path.dirname(sys.executable), "datacontract")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def role(contract):
    for p in contract.get("customProperties", []):
        if p["property"] == "flywheelRole":
            return p["value"]
    return None


def dc_test(contract_path, cwd):
    """The tool's JSON results for one contract."""
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    proc = subprocess.run(
        [BIN, "test", contract_path, "--output", out, "--output-format", "json"],
        cwd=cwd, capture_output=True, text=True,
    )
    try:
        with open(out) as f:
            return json.load(f), proc
    except (OSError, ValueError):
        return None, proc


def rejected_reasons(work, table):
    path = os.path.join(work, "out", "rejects", table, "dt=*", "*.parquet")
    rows = duckdb.sql(f"SELECT reasons FROM read_parquet('{path}')").fetchall()
    return [r for (reasons,) in rows for r in reasons.split("; ")]


def sql_rules(contract):
    return [q for obj in contract["schema"] for q in obj.get("quality", []) if q.get("type") == "sql"]


def check_contract(contracts_dir, work, name):
    path = os.path.join(contracts_dir, name)
    contract = load(path)
    table = contract["schema"][0]["name"]
    result, proc = dc_test(path, work)
    if result is None:
        return [f"{name}: datacontract test gave no results:\n{proc.stdout}\n{proc.stderr}"]
    checks = result["checks"]
    failed = [c for c in checks if c["result"] in ("failed", "error")]
    problems = []
    if len(checks) < 2 * len(contract["schema"][0]["properties"]):
        problems.append(f"{name}: only {len(checks)} checks ran")
    sql_checks = [c for c in checks if c.get("type") == "model_quality_sql"]
    if len(sql_checks) != len(sql_rules(contract)):
        problems.append(f"{name}: {len(sql_rules(contract))} sql rules, {len(sql_checks)} ran")
    if role(contract) == "published":
        for c in failed:
            problems.append(f"{name}: {c['name']}: {c.get('reason') or c.get('details')}")
    else:
        reasons = rejected_reasons(work, table)
        fields = {r.split(":", 1)[0] for r in reasons}
        for c in failed:
            if c.get("type") == "model_quality_sql":
                continue
            if c.get("field") not in fields:
                problems.append(f"{name}: the tool fails {c['name']} but flywheel rejected no row for {c.get('field')}")
        for rule, c in zip(sql_rules(contract), sql_checks):
            flywheel_rejects = any(rule["name"] in r for r in reasons)
            tool_fails = c["result"] == "failed"
            if flywheel_rejects != tool_fails:
                problems.append(f"{name}: rule {rule['name']}: flywheel rejects rows: {flywheel_rejects}, the tool fails: {tool_fails}")
    print(f"{name}: {len(checks)} checks, {len(failed)} failed, {len(sql_checks)} sql", flush=True)
    return problems


def broken_rule_fails(contracts_dir, work):
    """A visit whose value-added revenue exceeds its bill fails the tool's sql check."""
    tmp = tempfile.mkdtemp()
    os.makedirs(os.path.join(tmp, "data", "visits"))
    src = os.path.join(work, "data", "visits", "**", "*.parquet")
    dest = os.path.join(tmp, "data", "visits", "part-00000.parquet")
    duckdb.sql(
        f"COPY (SELECT * REPLACE (CASE WHEN row_number() OVER () = 1 THEN revenue + 1 ELSE value_added_revenue END AS value_added_revenue) "
        f"FROM read_parquet('{src}')) TO '{dest}' (FORMAT parquet)"
    )
    result, proc = dc_test(os.path.join(contracts_dir, "visits.odcs.yaml"), tmp)
    shutil.rmtree(tmp)
    if result is None:
        return [f"broken visits: no results:\n{proc.stdout}\n{proc.stderr}"]
    sql = [c for c in result["checks"] if c.get("type") == "model_quality_sql"]
    if [c["result"] for c in sql] != ["failed"]:
        return [f"broken visits: the sql rule did not fail: {sql}"]
    return []


# Contracts whose exported DDL DuckDB refuses because the tool leaves a reserved word unquoted.
UNQUOTED_RESERVED = {"referred_vs_other.odcs.yaml": "group"}


def ddl_loads(contracts_dir, work, names):
    problems = []
    con = duckdb.connect()
    for name in names:
        path = os.path.join(contracts_dir, name)
        proc = subprocess.run([BIN, "export", "sql", path, "--dialect", "postgres"], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"{name}: export sql failed: {proc.stderr}")
            continue
        reserved = UNQUOTED_RESERVED.get(name)
        try:
            con.execute(proc.stdout)
        except duckdb.Error as e:
            if reserved and f'"{reserved}"' in str(e) and f"  {reserved} " in proc.stdout:
                print(f"{name}: DDL refused as known: column {reserved} unquoted", flush=True)
            else:
                problems.append(f"{name}: DuckDB refuses the DDL: {e}\n{proc.stdout}")
            continue
        if reserved:
            problems.append(f"{name}: the DDL now loads: drop it from UNQUOTED_RESERVED")
        contract = load(path)
        if role(contract) != "published":
            continue
        table = contract["schema"][0]["name"]
        files = contract["servers"][0]["path"].replace("./", os.path.join(work, ""), 1)
        cols = ", ".join(f'"{p["name"]}"' for p in contract["schema"][0]["properties"])
        try:
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM read_parquet('{files}', hive_partitioning = true)")
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            print(f"{name}: DDL accepted, {n} rows loaded", flush=True)
        except duckdb.Error as e:
            problems.append(f"{name}: the published rows do not fit the exported DDL: {e}")
    return problems


def main():
    contracts_dir, work = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(contracts_dir) if n.endswith(".odcs.yaml"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for ps in pool.map(lambda n: check_contract(contracts_dir, work, n), names) for p in ps]
    problems += broken_rule_fails(contracts_dir, work)
    problems += ddl_loads(contracts_dir, work, names)
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"{len(names)} contracts run by datacontract-cli: ok")


if __name__ == "__main__":
    main()
