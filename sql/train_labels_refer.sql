-- train_labels_refer (training: not part of the nightly run)
-- Grain:    one row per customer delivered before the snapshot T, with the features at T.
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
    SELECT f.*, r.referrer_id IS NOT NULL AS label
    FROM snapshot_features f
    LEFT JOIN future_referrers r ON r.referrer_id = f.customer_id
    WHERE f.delivered
)
SELECT * FROM final ORDER BY customer_id
