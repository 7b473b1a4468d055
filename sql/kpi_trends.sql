-- kpi_trends
-- Grain:    one row per run date, source table (referral_kpis, lifecycle_health), scope
--           (`network` or a CRM service_center_id), KPI and point date: this run's date and the
--           earlier run dates found in the output (at most 11 before this one).
-- Inputs:   referral_kpis, lifecycle_health (this run), earlier_kpis (the same two tables of the
--           earlier run dates, read back from the output store by the run).
-- Contract: data-contracts/kpi_trends.odcs.yaml
-- Rules:    change = value − the value at the previous point date of the same source, scope and
--           KPI (null at the first point or when either value is null); previous_band = the band
--           there. Long format: one KPI value per row, for trend charts and "since the previous
--           run" deltas.
WITH
this_run AS (
    SELECT 'referral_kpis' AS source, dt, scope, kpi, value, band FROM referral_kpis
    UNION ALL
    SELECT 'lifecycle_health' AS source, dt, scope, kpi, value, band FROM lifecycle_health
),
points AS (
    SELECT source, dt, scope, kpi, value, band FROM this_run
    UNION ALL
    SELECT source, dt, scope, kpi, value, band FROM earlier_kpis
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
