"""Check flywheel's realised churn AUC (model_outcomes) independently, with DuckDB.

Usage: outcome_check.py OUTPUT INPUT RUN_DATE SCORED_DATE HORIZON_DAYS
The churn label of domain.md, computed here from the raw inputs: a customer with a visit in the
365 days before SCORED_DATE (customer_features of SCORED_DATE as published: visits_365d > 0) churns
when no accepted visit falls in [SCORED_DATE, SCORED_DATE + HORIZON_DAYS). Accepted visits: the
visits input without the rows the run of RUN_DATE rejected (every copy of a duplicated visit_id is
rejected, so excluding rejected ids is exact). The AUC is Mann-Whitney's (ties count one half),
against the p_churn the run of SCORED_DATE published. Exits 1 on any difference."""
import sys

import duckdb

out, inp, run_date, scored, horizon = sys.argv[1:6]
con = duckdb.connect()
con.execute(f"""
CREATE VIEW features AS SELECT customer_id, visits_365d
  FROM read_parquet('{out}/customer_features/dt={scored}/*.parquet');
CREATE VIEW scores AS SELECT customer_id, p_churn, churn_model_version
  FROM read_parquet('{out}/scores/customer_scores/dt={scored}/*.parquet');
CREATE VIEW rejected AS SELECT record_key AS visit_id
  FROM read_parquet('{out}/rejects/visits/dt={run_date}/*.parquet');
CREATE VIEW visits AS SELECT customer_id, visit_ts
  FROM read_parquet('{inp}/visits/**/*.parquet', hive_partitioning = false)
  WHERE visit_id NOT IN (SELECT visit_id FROM rejected);
""")
rows = con.execute(f"""
SELECT s.p_churn,
       NOT EXISTS (SELECT 1 FROM visits v WHERE v.customer_id = f.customer_id
                   AND v.visit_ts >= TIMESTAMPTZ '{scored} 00:00:00+00'
                   AND v.visit_ts < TIMESTAMPTZ '{scored} 00:00:00+00' + INTERVAL {int(horizon)} DAY) AS label
FROM features f JOIN scores s USING (customer_id)
WHERE f.visits_365d > 0 AND s.p_churn IS NOT NULL
""").fetchall()
pos = [p for p, y in rows if y]
neg = [p for p, y in rows if not y]
# Mann-Whitney U over sorted scores, ties one half.
ordered = sorted((p, y) for p, y in rows)
rank_sum, i = 0.0, 0
while i < len(ordered):
    j = i
    while j < len(ordered) and ordered[j][0] == ordered[i][0]:
        j += 1
    mid = (i + 1 + j) / 2.0
    rank_sum += mid * sum(1 for k in range(i, j) if ordered[k][1])
    i = j
auc = (rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg))
got = con.execute(f"""
SELECT rows, positives, realised_auc, CAST(scored_date AS VARCHAR)
FROM read_parquet('{out}/model_outcomes/dt={run_date}/*.parquet') WHERE target = 'churn'
""").fetchall()
print(f"independent: rows {len(rows)}, positives {len(pos)}, AUC {auc:.12f}; flywheel: {got}")
ok = (len(got) == 1 and got[0][0] == len(rows) and got[0][1] == len(pos)
      and abs(got[0][2] - auc) < 1e-9 and got[0][3] == scored)
sys.exit(0 if ok else 1)
