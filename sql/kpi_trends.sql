-- kpi_trends
-- Grain:    one row per run date, source, scope, KPI and point date: this run's date and the
--           earlier run dates found in the output (at most 11 before this one). Sources: the KPI
--           tables `referral_kpis` and `lifecycle_health` (every scope: `network` and each CRM
--           service_center_id) and the CRM lists `ambassador_candidates` and `churn_alerts`
--           (scope `network`; KPIs `listed`, `entered`, `left`).
-- Inputs:   referral_kpis, lifecycle_health, ambassador_candidates, churn_alerts (this run);
--           earlier_kpis and earlier_lists (the same tables of the earlier run dates, read back
--           from the output store by the run).
-- Contract: data-contracts/kpi_trends.odcs.yaml
-- Rules:    change = value − the value at the previous point date of the same source, scope and
--           KPI (null at the first point or when either value is null); previous_band = the band
--           there. A list's `listed` is its row count on the point date, `entered` the customers
--           on it then and not on the previous point date's list, `left` the reverse (both null
--           at the first point). The cooldowns keep a customer off a list for some days after
--           being listed, so on consecutive dates `entered` is usually the whole list. Long
--           format: one value per row, for trend charts and "since the previous run" deltas.
WITH
this_run AS (
    SELECT 'referral_kpis' AS source, dt, scope, kpi, value, band FROM referral_kpis
    UNION ALL
    SELECT 'lifecycle_health' AS source, dt, scope, kpi, value, band FROM lifecycle_health
),
kpi_points AS (
    SELECT source, dt, scope, kpi, value, band FROM this_run
    UNION ALL
    SELECT source, dt, scope, kpi, value, band FROM earlier_kpis
),
point_dates AS (
    SELECT dt, LAG(dt) OVER (ORDER BY dt) AS previous_dt
    FROM (SELECT DISTINCT dt FROM kpi_points) d
),
listed AS (
    SELECT 'ambassador_candidates' AS list, ${run_date} AS dt, customer_id FROM ambassador_candidates
    UNION ALL
    SELECT 'churn_alerts' AS list, ${run_date} AS dt, customer_id FROM churn_alerts
    UNION ALL
    SELECT list, dt, customer_id FROM earlier_lists
),
list_dates AS (
    SELECT l.list, p.dt, p.previous_dt
    FROM point_dates p
    CROSS JOIN (SELECT 'ambassador_candidates' AS list UNION ALL SELECT 'churn_alerts') l
),
on_date AS (
    SELECT d.list, d.dt, x.customer_id
    FROM list_dates d JOIN listed x ON x.list = d.list AND x.dt = d.dt
),
on_previous AS (
    SELECT d.list, d.dt, x.customer_id
    FROM list_dates d JOIN listed x ON x.list = d.list AND x.dt = d.previous_dt
),
moves AS (
    SELECT COALESCE(n.list, b.list) AS list,
           COALESCE(n.dt, b.dt) AS dt,
           SUM(CASE WHEN n.customer_id IS NOT NULL THEN 1 ELSE 0 END) AS listed,
           SUM(CASE WHEN b.customer_id IS NULL THEN 1 ELSE 0 END) AS entered,
           SUM(CASE WHEN n.customer_id IS NULL THEN 1 ELSE 0 END) AS left_list
    FROM on_date n
    FULL JOIN on_previous b ON b.list = n.list AND b.dt = n.dt AND b.customer_id = n.customer_id
    GROUP BY COALESCE(n.list, b.list), COALESCE(n.dt, b.dt)
),
list_counts AS (
    SELECT d.list, d.dt,
           COALESCE(m.listed, 0) AS listed,
           CASE WHEN d.previous_dt IS NOT NULL THEN COALESCE(m.entered, 0) END AS entered,
           CASE WHEN d.previous_dt IS NOT NULL THEN COALESCE(m.left_list, 0) END AS left_list
    FROM list_dates d
    LEFT JOIN moves m ON m.list = d.list AND m.dt = d.dt
),
list_points AS (
    SELECT list AS source, dt, 'network' AS scope, 'listed' AS kpi, CAST(listed AS DOUBLE) AS value FROM list_counts
    UNION ALL
    SELECT list, dt, 'network', 'entered', CAST(entered AS DOUBLE) FROM list_counts
    UNION ALL
    SELECT list, dt, 'network', 'left', CAST(left_list AS DOUBLE) FROM list_counts
),
points AS (
    SELECT source, dt, scope, kpi, value, band FROM kpi_points
    UNION ALL
    SELECT source, dt, scope, kpi, value, CAST(NULL AS VARCHAR) AS band FROM list_points
),
final AS (
    SELECT ${run_date} AS run_date,
           source,
           scope,
           kpi,
           dt AS point_date,
           value,
           band,
           value - LAG(value) OVER (PARTITION BY source, scope, kpi ORDER BY dt) AS change,
           LAG(band) OVER (PARTITION BY source, scope, kpi ORDER BY dt) AS previous_band
    FROM points
)
SELECT run_date AS dt, source, scope, kpi, point_date, value, band, change, previous_band
FROM final
ORDER BY source, scope, kpi, point_date
