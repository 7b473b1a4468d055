-- referred_vs_other
-- Grain:    one row per run date, scope (`network` or a CRM service_center_id) and group
--           (`referred`: referred_by set; `other`).
-- Inputs:   int_scopes, customer_features, nps_responses.
-- Contract: data-contracts/referred_vs_other.odcs.yaml
-- Output:   referred_vs_other/dt=D/
-- Rules:    everything is over the group's active customers (>= 1 visit in W): customers is
--           their count, mean_revenue_365d their mean revenue in W, retention_rate the share with
--           >= 2 visits in W, nps the NPS (one decimal, halves away from zero) of their responses
--           in W. Null on a zero denominator.
WITH
scopes AS (
    SELECT scope FROM int_scopes
),
groups AS (
    SELECT column1 AS grp, column2 AS pos FROM (VALUES ('referred', 1), ('other', 2)) AS t
),
active AS (
    SELECT customer_id, service_center_id,
           CASE WHEN acquired_by_referral THEN 'referred' ELSE 'other' END AS grp,
           revenue_365d, visits_365d
    FROM customer_features
    WHERE visits_365d > 0
),
active_scope AS (
    SELECT 'network' AS scope, a.* FROM active a
    UNION ALL
    SELECT a.service_center_id AS scope, a.* FROM active a
),
customer_counts AS (
    SELECT scope, grp,
           COUNT(*) AS customers,
           SUM(revenue_365d) AS revenue_365d,
           SUM(CASE WHEN visits_365d >= 2 THEN 1 ELSE 0 END) AS retained
    FROM active_scope
    GROUP BY scope, grp
),
answers AS (
    SELECT s.scope, s.grp, n.score
    FROM nps_responses n
    JOIN active_scope s ON s.customer_id = n.customer_id
    WHERE n.response_ts < ${as_of}
      AND CAST(n.response_ts AS BIGINT) >= ${window_start_ns}
),
nps_counts AS (
    SELECT scope, grp,
           SUM(nps_point(score)) AS net_promoters,
           COUNT(*) AS responses
    FROM answers
    GROUP BY scope, grp
),
final AS (
    SELECT ${run_date} AS dt,
           s.scope,
           g.grp AS "group",
           CAST(COALESCE(c.customers, 0) AS BIGINT) AS customers,
           CASE WHEN COALESCE(c.customers, 0) = 0 THEN CAST(NULL AS DOUBLE)
                ELSE CAST(c.revenue_365d AS DOUBLE) / CAST(c.customers AS DOUBLE) END AS mean_revenue_365d,
           CASE WHEN COALESCE(c.customers, 0) = 0 THEN CAST(NULL AS DOUBLE)
                ELSE CAST(c.retained AS DOUBLE) / CAST(c.customers AS DOUBLE) END AS retention_rate,
           CAST(COALESCE(n.responses, 0) AS BIGINT) AS nps_responses,
           CASE WHEN COALESCE(n.responses, 0) = 0 THEN CAST(NULL AS DOUBLE)
                ELSE CAST(nps_tenths(n.net_promoters, n.responses) AS DOUBLE) / 10.0
           END AS nps,
           g.pos
    FROM scopes s
    CROSS JOIN groups g
    LEFT JOIN customer_counts c ON c.scope = s.scope AND c.grp = g.grp
    LEFT JOIN nps_counts n ON n.scope = s.scope AND n.grp = g.grp
)
SELECT dt, scope, "group", customers, mean_revenue_365d, retention_rate, nps_responses, nps
FROM final
ORDER BY CASE WHEN scope = 'network' THEN 0 ELSE 1 END, scope, pos
