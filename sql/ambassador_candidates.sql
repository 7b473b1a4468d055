-- ambassador_candidates
-- Grain:    one row per listed customer per run date (the CRM import list of the community team).
-- Inputs:   customer_features, customer_scores, previous_ambassador_candidates (lists of earlier
--           run dates within candidate_cooldown_days, read from the output store).
-- Contract: data-contracts/ambassador_candidates.odcs.yaml
-- Output:   lists/ambassador_candidates/dt=D/ (Parquet and CSV)
-- Rules:    domain.md, "Lists for the CRM". rule_qualified: last NPS >= 9, >= 3 visits in W,
--           >= 2 eligible conversions ever, community member or social shares in 90 days.
--           Model candidate: last NPS >= 9, >= 2 visits in W and center_rank <=
--           ceil(ambassador_top_share × scored customers of the home center), where center_rank
--           orders the center's scored customers by p_refer (ties: customer_id). Never listed:
--           no marketing consent, tracking opt-out, or listed on a run date in
--           [D - candidate_cooldown_days, D).
WITH
-- Every scored customer's rank in its center, on narrow rows (id, center, p_refer): one sort of
-- every customer, without the columns only the few listed rows need. center_scored counts the
-- center's scored customers (the count over the scored partition; an unscored customer's count
-- is never read: it cannot be a model candidate).
ranked AS (
    SELECT f.customer_id, s.p_refer,
           CASE WHEN s.p_refer IS NULL THEN NULL ELSE
               ROW_NUMBER() OVER (PARTITION BY f.service_center_id, s.p_refer IS NULL
                                  ORDER BY s.p_refer DESC, f.customer_id) END AS center_rank,
           COUNT(s.p_refer) OVER (PARTITION BY f.service_center_id, s.p_refer IS NULL) AS center_scored
    FROM customer_features f
    JOIN customer_scores s ON s.customer_id = f.customer_id
),
-- Only customers who can be listed: both routes need a last NPS >= 9 and >= 2 visits in W, and
-- no one without marketing consent or with a tracking opt-out is ever listed (said here only).
scored AS (
    SELECT f.customer_id, f.service_center_id, f.advisor_id, r.p_refer, f.nps_last, f.visits_365d,
           f.referrals_converted_total, f.community_member, f.social_shares_90d,
           r.center_rank, r.center_scored
    FROM customer_features f
    JOIN ranked r ON r.customer_id = f.customer_id
    WHERE f.nps_last >= 9 AND f.visits_365d >= 2
      AND f.marketing_consent AND NOT f.referral_tracking_opt_out
),
judged AS (
    SELECT *,
           COALESCE(nps_last >= 9 AND visits_365d >= 3 AND referrals_converted_total >= 2
                    AND (community_member OR social_shares_90d > 0), FALSE) AS rule_qualified,
           COALESCE(nps_last >= 9 AND visits_365d >= 2
                    AND center_rank <= CEIL(${ambassador_top_share} * center_scored), FALSE) AS model_candidate
    FROM scored
),
cooling AS (
    SELECT DISTINCT customer_id FROM previous_ambassador_candidates
    WHERE dt >= ${run_date} - INTERVAL '${candidate_cooldown_days} days' AND dt < ${run_date}
),
final AS (
    SELECT ${run_date} AS dt,
           j.customer_id,
           j.service_center_id,
           j.advisor_id,
           j.p_refer,
           CAST(j.center_rank AS INT) AS center_rank,
           j.nps_last,
           j.visits_365d,
           j.referrals_converted_total AS eligible_conversions,
           reward_tier(j.referrals_converted_total) AS tier,
           j.rule_qualified,
           j.model_candidate,
           concat_ws('; ',
               CASE WHEN j.rule_qualified THEN 'rule: last NPS ' || CAST(j.nps_last AS VARCHAR) || ', '
                   || CAST(j.visits_365d AS VARCHAR) || ' visits in the last year, '
                   || CAST(j.referrals_converted_total AS VARCHAR) || ' successful referrals'
                   || CASE WHEN j.community_member THEN ', community member' ELSE ', shares service stories' END
               END,
               CASE WHEN j.model_candidate THEN 'model: p_refer rank ' || CAST(j.center_rank AS VARCHAR)
                   || ' of ' || CAST(j.center_scored AS VARCHAR) || ' in ' || j.service_center_id END
           ) AS reasons
    FROM judged j
    LEFT JOIN cooling c ON c.customer_id = j.customer_id
    WHERE (j.rule_qualified OR j.model_candidate)
      AND c.customer_id IS NULL
)
SELECT * FROM final ORDER BY service_center_id, rule_qualified DESC, center_rank, customer_id
