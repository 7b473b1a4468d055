-- train_labels_churn (training: not part of the nightly run)
-- Grain:    one row per customer with at least one visit in the year before the snapshot T (the
--           churn population): customer_id and label, in customer_id order. The features at T
--           are that customer's row of snapshot_features (training reads them from there, in
--           the same order, instead of copying every feature into the training set).
-- Inputs:   snapshot_features (customer_features evaluated at T), visits.
-- Contract: none (training set, not published).
-- Label:    domain.md, Scores: no visit in [T, T + churn_horizon_days). ${snapshot_ns} is T.
WITH
returning AS (
    SELECT DISTINCT customer_id
    FROM visits
    WHERE CAST(visit_ts AS BIGINT) >= ${snapshot_ns}
      AND CAST(visit_ts AS BIGINT) < ${snapshot_ns} + ${churn_horizon_days} * ${day_ns}
),
final AS (
    SELECT f.customer_id, r.customer_id IS NULL AS label
    FROM snapshot_features f
    LEFT JOIN returning r ON r.customer_id = f.customer_id
    WHERE f.visits_365d > 0
)
SELECT * FROM final ORDER BY customer_id
