-- train_labels_refer (training: not part of the nightly run)
-- Grain:    one row per customer delivered before the snapshot T: customer_id and label, in
--           customer_id order. The features at T are that customer's row of snapshot_features
--           (training reads them from there, in the same order, instead of copying every
--           feature into the training set).
-- Inputs:   snapshot_features (customer_features evaluated at T), int_referral_signups (at the run date: its flags).
-- Contract: none (training set, not published).
-- Label:    domain.md, Scores: the customer is the referrer of at least one signup with no flag
--           in [T, T + refer_horizon_days). ${snapshot_ns} is T in ns since the epoch.
WITH
future_referrers AS (
    SELECT DISTINCT referrer_id
    FROM int_referral_signups
    WHERE signup_ns >= ${snapshot_ns}
      AND signup_ns < ${snapshot_ns} + ${refer_horizon_days} * ${day_ns}
      AND unflagged
),
final AS (
    SELECT f.customer_id, r.referrer_id IS NOT NULL AS label
    FROM snapshot_features f
    LEFT JOIN future_referrers r ON r.referrer_id = f.customer_id
    WHERE f.delivered
)
SELECT * FROM final ORDER BY customer_id
