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
-- Network and center counts in one pass: a grouping set per scope, then folded by scope name (a
-- center whose id were `network` would add into the network row, as int_scopes lists it once).
customer_groups AS (
    SELECT CASE WHEN grouping(service_center_id) = 1 THEN 'network' ELSE service_center_id END AS scope,
           SUM(CASE WHEN delivered THEN 1 ELSE 0 END) AS delivered,
           SUM(CASE WHEN delivered AND active THEN 1 ELSE 0 END) AS delivered_active,
           SUM(CASE WHEN active THEN 1 ELSE 0 END) AS active,
           SUM(CASE WHEN active AND retained THEN 1 ELSE 0 END) AS retained,
           SUM(CASE WHEN active AND value_added THEN 1 ELSE 0 END) AS value_added,
           SUM(CASE WHEN active AND converting_referrer THEN 1 ELSE 0 END) AS referring
    FROM customers
    GROUP BY GROUPING SETS ((), (service_center_id))
),
customer_counts AS (
    SELECT scope,
           SUM(delivered) AS delivered,
           SUM(delivered_active) AS delivered_active,
           SUM(active) AS active,
           SUM(retained) AS retained,
           SUM(value_added) AS value_added,
           SUM(referring) AS referring
    FROM customer_groups
    GROUP BY scope
),
-- A customer's first-ever visit is in W exactly when every visit before as_of is in W, so only
-- those customers' visits are searched for it.
new_customers AS (
    SELECT customer_id, service_center_id
    FROM customer_features
    WHERE visits_365d > 0 AND visits_365d = visits_total
),
-- First-ever visit per new customer: earliest visit_ts, ties the smaller visit_id, in one hash
-- aggregate (`first_by`, engine::pick; no window, no join back onto the visits).
first_visits AS (
    SELECT c.service_center_id,
           first_by(v.visit_id, CAST(v.visit_ts AS BIGINT), v.visit_id) AS visit_id
    FROM visits v
    JOIN new_customers c ON c.customer_id = v.customer_id
    -- Every visit of a new customer is in W, so only W's visits are joined: the same first
    -- visits, from a third of the visits (a sort-merge join sorts every row it joins).
    WHERE v.visit_ts < ${as_of} AND CAST(v.visit_ts AS BIGINT) >= ${window_start_ns}
    GROUP BY v.customer_id, c.service_center_id
),
activation_answers AS (
    SELECT v.service_center_id, n.score
    FROM nps_responses n
    JOIN first_visits v ON v.visit_id = n.visit_id
    WHERE n.response_ts < ${as_of}
),
answer_groups AS (
    SELECT CASE WHEN grouping(service_center_id) = 1 THEN 'network' ELSE service_center_id END AS scope,
           SUM(nps_point(score)) AS net_promoters,
           COUNT(*) AS responses
    FROM activation_answers
    GROUP BY GROUPING SETS ((), (service_center_id))
),
nps_counts AS (
    SELECT scope,
           SUM(net_promoters) AS net_promoters,
           SUM(responses) AS responses
    FROM answer_groups
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
