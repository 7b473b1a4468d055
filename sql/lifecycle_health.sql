-- lifecycle_health
-- Grain:    one row per run date, scope (`network` or a CRM service_center_id) and AARRR stage KPI
--           (domain.md, "Lifecycle health", seed 004).
-- Inputs:   int_scopes, customer_features, visits, nps_responses, int_kpi_bands.
-- Contract: data-contracts/lifecycle_health.odcs.yaml
-- Output:   lifecycle_health/dt=D/
-- Rules:    bands excellent / good / pass / danger, compared exactly (ratios in integers, NPS on
--           its value rounded to one decimal). activation_nps: every response whose visit_id is a
--           customer's first-ever visit (earliest accepted visit before as_of; ties: smaller
--           visit_id) when that first visit is in W; scoped by that customer's home center.
WITH
scopes AS (
    SELECT scope FROM int_scopes
),
customers AS (
    SELECT service_center_id,
           delivered,
           visits_365d > 0 AS active,
           visits_365d >= 2 AS retained,
           value_added_visits_365d > 0 AS value_added,
           referrals_converted_365d > 0 AS converting_referrer
    FROM customer_features
),
customer_scope AS (
    SELECT 'network' AS scope, c.* FROM customers c
    UNION ALL
    SELECT c.service_center_id AS scope, c.* FROM customers c
),
customer_counts AS (
    SELECT scope,
           SUM(CASE WHEN delivered THEN 1 ELSE 0 END) AS delivered,
           SUM(CASE WHEN delivered AND active THEN 1 ELSE 0 END) AS delivered_active,
           SUM(CASE WHEN active THEN 1 ELSE 0 END) AS active,
           SUM(CASE WHEN active AND retained THEN 1 ELSE 0 END) AS retained,
           SUM(CASE WHEN active AND value_added THEN 1 ELSE 0 END) AS value_added,
           SUM(CASE WHEN active AND converting_referrer THEN 1 ELSE 0 END) AS referring
    FROM customer_scope
    GROUP BY scope
),
-- First-ever visit per customer: earliest visit_ts, ties the smaller visit_id, in one hash
-- aggregate over the visits (no window, no join back onto the visits).
first_visits AS (
    SELECT customer_id,
           first_value(visit_id ORDER BY visit_ts, visit_id) AS visit_id,
           MIN(CAST(visit_ts AS BIGINT)) AS ts_ns
    FROM visits
    WHERE visit_ts < ${as_of}
    GROUP BY customer_id
),
activation_answers AS (
    SELECT f.service_center_id, n.score
    FROM nps_responses n
    JOIN first_visits v ON v.visit_id = n.visit_id
    JOIN customer_features f ON f.customer_id = v.customer_id
    WHERE v.ts_ns >= ${window_start_ns}
      AND n.response_ts < ${as_of}
),
answer_scope AS (
    SELECT 'network' AS scope, a.* FROM activation_answers a
    UNION ALL
    SELECT a.service_center_id AS scope, a.* FROM activation_answers a
),
nps_counts AS (
    SELECT scope,
           SUM(nps_point(score)) AS net_promoters,
           COUNT(*) AS responses
    FROM answer_scope
    GROUP BY scope
),
counts AS (
    SELECT s.scope,
           COALESCE(c.delivered, 0) AS delivered,
           COALESCE(c.delivered_active, 0) AS delivered_active,
           COALESCE(c.active, 0) AS active,
           COALESCE(c.retained, 0) AS retained,
           COALESCE(c.value_added, 0) AS value_added,
           COALESCE(c.referring, 0) AS referring,
           COALESCE(n.net_promoters, 0) AS net_promoters,
           COALESCE(n.responses, 0) AS responses
    FROM scopes s
    LEFT JOIN customer_counts c ON c.scope = s.scope
    LEFT JOIN nps_counts n ON n.scope = s.scope
),
-- The measures of each KPI; sql/int_kpi_bands.sql gives its position, kind and band edges.
measures AS (
    SELECT scope, 'acquisition_visit_rate' AS kpi, delivered_active AS numerator, delivered AS denominator FROM counts
    UNION ALL
    SELECT scope, 'activation_nps', net_promoters, responses FROM counts
    UNION ALL
    SELECT scope, 'retention_rate', retained, active FROM counts
    UNION ALL
    SELECT scope, 'value_added_penetration', value_added, active FROM counts
    UNION ALL
    SELECT scope, 'referral_rate', referring, active FROM counts
),
kpis AS (
    SELECT m.scope, b.pos, m.kpi, m.numerator, m.denominator, b.kind, b.excellent, b.good, b.pass
    FROM measures m
    JOIN int_kpi_bands b ON b.source = 'lifecycle_health' AND b.kpi = m.kpi
),
valued AS (
    SELECT *,
           CASE WHEN kind = 'nps' THEN nps_tenths(numerator, denominator) END AS nps_tenths
    FROM kpis
),
final AS (
    SELECT ${run_date} AS dt,
           scope,
           kpi,
           CAST(numerator AS BIGINT) AS numerator,
           CAST(denominator AS BIGINT) AS denominator,
           CASE WHEN denominator = 0 THEN CAST(NULL AS DOUBLE)
                WHEN kind = 'nps' THEN CAST(nps_tenths AS DOUBLE) / 10.0
                ELSE CAST(numerator AS DOUBLE) / CAST(denominator AS DOUBLE) END AS value,
           CASE WHEN denominator = 0 THEN CAST(NULL AS VARCHAR)
                WHEN meets_edge(kind, numerator, denominator, excellent) THEN 'excellent'
                WHEN meets_edge(kind, numerator, denominator, good) THEN 'good'
                WHEN meets_edge(kind, numerator, denominator, pass) THEN 'pass'
                ELSE 'danger' END AS band,
           pos
    FROM valued
)
SELECT dt, scope, kpi, numerator, denominator, value, band
FROM final
ORDER BY CASE WHEN scope = 'network' THEN 0 ELSE 1 END, scope, pos
