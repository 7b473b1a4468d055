-- churn_alerts
-- Grain:    one row per alerted customer per run date (the CRM import list of the advisors).
-- Inputs:   customer_features, customer_scores, previous_churn_alerts (lists of earlier run
--           dates within alert_cooldown_days, read from the output store).
-- Contract: data-contracts/churn_alerts.odcs.yaml
-- Output:   lists/churn_alerts/dt=D/ (Parquet and CSV)
-- Rules:    domain.md, "Churn alerts" (seed 004). Population: >= 1 visit in W. Alert when
--           p_churn >= churn_alert_threshold or days since last visit >= 90. value_at_risk =
--           p_churn × revenue in W; center_rank orders the center's alerts by value_at_risk
--           (nulls last; ties: customer_id). Action: service_recovery_call for a detractor last
--           NPS, else care_call_with_service_reminder at >= 90 days, else proactive_check_in.
--           Never listed: no marketing consent, or alerted on a run date in
--           [D - alert_cooldown_days, D). Tracking opt-out does not matter here.
WITH
population AS (
    SELECT f.customer_id, f.service_center_id, f.advisor_id, f.days_since_last_visit,
           f.revenue_365d, f.nps_last, f.marketing_consent, s.p_churn,
           -- When no feature pushes p_churn up (the intercept alone carries it over the
           -- threshold), say so rather than leave the advisor an empty reason.
           CASE WHEN s.p_churn_reasons IS NULL OR s.p_churn_reasons = ''
                THEN 'p_churn ' || CAST(ROUND(s.p_churn, 2) AS VARCHAR) || ' at or above the alert threshold'
                ELSE s.p_churn_reasons END AS p_churn_reasons
    FROM customer_features f
    JOIN customer_scores s ON s.customer_id = f.customer_id
    WHERE f.visits_365d > 0
),
alerted AS (
    SELECT *,
           COALESCE(p_churn >= ${churn_alert_threshold}, FALSE) AS model_alert,
           days_since_last_visit >= 90 AS visit_gap_alert
    FROM population
),
cooling AS (
    SELECT DISTINCT customer_id FROM previous_churn_alerts
    WHERE dt >= ${run_date} - INTERVAL '${alert_cooldown_days} days' AND dt < ${run_date}
),
listed AS (
    SELECT a.*, a.p_churn * CAST(a.revenue_365d AS DOUBLE) AS value_at_risk
    FROM alerted a
    LEFT JOIN cooling c ON c.customer_id = a.customer_id
    WHERE (a.model_alert OR a.visit_gap_alert)
      AND a.marketing_consent
      AND c.customer_id IS NULL
),
final AS (
    SELECT ${run_date} AS dt,
           customer_id,
           service_center_id,
           advisor_id,
           p_churn,
           days_since_last_visit,
           revenue_365d,
           value_at_risk,
           CAST(ROW_NUMBER() OVER (PARTITION BY service_center_id
                                   ORDER BY value_at_risk DESC NULLS LAST, customer_id) AS INT) AS center_rank,
           -- The model's reasons already say "no visit for N days" when that pushes p_churn up.
           CASE WHEN model_alert AND (NOT visit_gap_alert OR strpos(p_churn_reasons, 'no visit for') > 0)
                    THEN p_churn_reasons
                WHEN model_alert
                    THEN concat_ws('; ', 'no visit for ' || CAST(days_since_last_visit AS VARCHAR) || ' days', p_churn_reasons)
                ELSE 'no visit for ' || CAST(days_since_last_visit AS VARCHAR) || ' days' END AS reasons,
           CASE WHEN nps_last <= 6 THEN 'service_recovery_call'
                WHEN days_since_last_visit >= 90 THEN 'care_call_with_service_reminder'
                ELSE 'proactive_check_in' END AS suggested_action
    FROM listed
)
SELECT * FROM final ORDER BY service_center_id, center_rank
