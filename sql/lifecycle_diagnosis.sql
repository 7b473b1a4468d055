-- lifecycle_diagnosis
-- Grain:    one row per run date and scope (`network` or a CRM service_center_id).
-- Inputs:   lifecycle_health, customer_features.
-- Contract: data-contracts/lifecycle_diagnosis.odcs.yaml
-- Output:   lifecycle_diagnosis/dt=D/
-- Rules:    diagnosis from the count of `excellent` among the five lifecycle KPIs (a null KPI is
--           not excellent; seed 004): 5 flywheel_running, 3-4 healthy_fix_weak_stages,
--           1-2 clear_weaknesses, 0 crisis. The AARRR funnel: customers delivered before as_of;
--           activated = delivered with at least one visit before as_of; active = at least one
--           visit in W; retained = >= 2 visits in W; value_added = active with a value-added
--           visit in W; referring = active and referrer of an eligible conversion in W.
WITH
health AS (
    SELECT scope, SUM(CASE WHEN band = 'excellent' THEN 1 ELSE 0 END) AS excellent_stages
    FROM lifecycle_health
    GROUP BY scope
),
customer_scope AS (
    SELECT 'network' AS scope, f.* FROM customer_features f
    UNION ALL
    SELECT f.service_center_id AS scope, f.* FROM customer_features f
),
funnel AS (
    SELECT scope,
           SUM(CASE WHEN delivered THEN 1 ELSE 0 END) AS customers_delivered,
           SUM(CASE WHEN delivered AND visits_total > 0 THEN 1 ELSE 0 END) AS activated,
           SUM(CASE WHEN visits_365d > 0 THEN 1 ELSE 0 END) AS active,
           SUM(CASE WHEN visits_365d >= 2 THEN 1 ELSE 0 END) AS retained,
           SUM(CASE WHEN visits_365d > 0 AND value_added_visits_365d > 0 THEN 1 ELSE 0 END) AS value_added,
           SUM(CASE WHEN visits_365d > 0 AND referrals_converted_365d > 0 THEN 1 ELSE 0 END) AS referring
    FROM customer_scope
    GROUP BY scope
),
final AS (
    SELECT ${run_date} AS dt,
           h.scope,
           CAST(h.excellent_stages AS INT) AS excellent_stages,
           CASE WHEN h.excellent_stages = 5 THEN 'flywheel_running'
                WHEN h.excellent_stages >= 3 THEN 'healthy_fix_weak_stages'
                WHEN h.excellent_stages >= 1 THEN 'clear_weaknesses'
                ELSE 'crisis' END AS diagnosis,
           CAST(COALESCE(f.customers_delivered, 0) AS BIGINT) AS customers_delivered,
           CAST(COALESCE(f.activated, 0) AS BIGINT) AS activated,
           CAST(COALESCE(f.active, 0) AS BIGINT) AS active,
           CAST(COALESCE(f.retained, 0) AS BIGINT) AS retained,
           CAST(COALESCE(f.value_added, 0) AS BIGINT) AS value_added,
           CAST(COALESCE(f.referring, 0) AS BIGINT) AS referring
    FROM health h
    LEFT JOIN funnel f ON f.scope = h.scope
)
SELECT * FROM final
ORDER BY CASE WHEN scope = 'network' THEN 0 ELSE 1 END, scope
