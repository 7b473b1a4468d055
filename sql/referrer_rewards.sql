-- referrer_rewards
-- Grain:    one row per referrer with at least one signup before as_of (opted-out referrers are
--           left out: referral_attribution has none of their rows).
-- Inputs:   referral_attribution.
-- Contract: data-contracts/referrer_rewards.odcs.yaml
-- Output:   referrer_rewards/dt=D/
-- Rules:    domain.md, "Reward ladder": points owed to date = the ladder's entitlement for the
--           eligible conversions to date; points issued = reward_points of the rewards matched to
--           eligible conversions; points unearned = reward_points on issued_unearned rows (the
--           clawback list). Tier: none below 3, gold 3-4, ambassador 5-9, super_ambassador 10+.
WITH
per_referrer AS (
    SELECT referrer_id,
           MAX(referrer_service_center_id) AS referrer_service_center_id,
           COUNT(*) AS signups,
           SUM(CASE WHEN eligible THEN 1 ELSE 0 END) AS eligible_conversions,
           SUM(points_owed) AS points_owed,
           SUM(CASE WHEN eligible THEN COALESCE(reward_points, 0) ELSE 0 END) AS points_issued,
           SUM(CASE WHEN reward_status = 'issued_unearned' THEN COALESCE(reward_points, 0) ELSE 0 END) AS points_unearned,
           SUM(CASE WHEN reward_status = 'owed' THEN 1 ELSE 0 END) AS rewards_owed,
           SUM(CASE WHEN reward_status = 'pending' THEN 1 ELSE 0 END) AS rewards_pending,
           SUM(CASE WHEN reward_status = 'issued_unearned' THEN 1 ELSE 0 END) AS rewards_unearned
    FROM referral_attribution
    GROUP BY referrer_id
),
final AS (
    SELECT ${run_date} AS dt,
           referrer_id,
           referrer_service_center_id,
           CAST(signups AS BIGINT) AS signups,
           CAST(eligible_conversions AS BIGINT) AS eligible_conversions,
           CAST(points_owed AS BIGINT) AS points_owed,
           CAST(points_issued AS BIGINT) AS points_issued,
           CAST(points_unearned AS BIGINT) AS points_unearned,
           CAST(points_owed - points_issued AS BIGINT) AS points_balance,
           CAST(rewards_owed AS BIGINT) AS rewards_owed,
           CAST(rewards_pending AS BIGINT) AS rewards_pending,
           CAST(rewards_unearned AS BIGINT) AS rewards_unearned,
           reward_tier(eligible_conversions) AS tier,
           conversions_to_next_tier(eligible_conversions) AS conversions_to_next_tier
    FROM per_referrer
)
SELECT * FROM final ORDER BY referrer_id
