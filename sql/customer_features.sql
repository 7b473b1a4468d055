-- customer_features
-- Grain:    one row per accepted CRM customer per run date (the CRM is a snapshot: every
--           customer is here, delivered or not).
-- Inputs:   crm_customers, visits, nps_responses, referral_events, int_referral_signups,
--           int_referral_generations.
-- Contract: data-contracts/customer_features.odcs.yaml
-- Output:   customer_features/dt=D/
-- Engine:   keep_join_order (the figures are the joins' build sides, the customers stream
--           through: see the joins below)
-- Time:     only events with timestamp < as_of count (the job is also evaluated at earlier
--           snapshots to train the models, so it filters by ${as_of} itself). W = the 365 days
--           before as_of; "days since" = floor((as_of - t) / 86,400 s). 86400000000000 = 1 day in ns.
WITH
customers AS (
    SELECT customer_id, service_center_id, advisor_id, segment, vehicle_model, delivery_date,
           referred_by, community_member, social_shares_90d, marketing_consent,
           referral_tracking_opt_out
    FROM crm_customers
),
visit_events AS (
    SELECT customer_id, visit_type, revenue, value_added_revenue, wait_minutes,
           CAST(visit_ts AS BIGINT) AS ts_ns,
           CAST(visit_ts AS BIGINT) >= ${window_start_ns} AS in_w,
           CAST(visit_ts AS BIGINT) >= ${as_of_ns} - 90 * ${day_ns} AS in_90d
    FROM visits
    WHERE visit_ts < ${as_of}
),
visit_stats AS (
    SELECT customer_id,
           MAX(ts_ns) AS last_visit_ns,
           COUNT(*) AS visits_total,
           SUM(CASE WHEN in_90d THEN 1 ELSE 0 END) AS visits_90d,
           SUM(CASE WHEN in_w THEN 1 ELSE 0 END) AS visits_365d,
           SUM(CASE WHEN in_w THEN revenue END) AS revenue_365d,
           SUM(CASE WHEN in_w THEN value_added_revenue END) AS value_added_revenue_365d,
           SUM(CASE WHEN in_w AND value_added_revenue > 0 THEN 1 ELSE 0 END) AS value_added_visits_365d,
           SUM(CASE WHEN in_w AND visit_type IN ('repair', 'warranty') THEN 1 ELSE 0 END) AS repair_visits_365d,
           SUM(CASE WHEN in_w AND visit_type IN ('roadside_assistance', 'mobile_service') THEN 1 ELSE 0 END) AS roadside_365d,
           AVG(CASE WHEN in_w THEN CAST(wait_minutes AS DOUBLE) END) AS avg_wait_minutes_365d
    FROM visit_events
    GROUP BY customer_id
),
answers AS (
    SELECT customer_id, response_id, score, response_ts,
           CAST(response_ts AS BIGINT) >= ${window_start_ns} AS in_w
    FROM nps_responses
    WHERE response_ts < ${as_of}
),
-- The last answer's score (latest; ties: the larger response_id: `last_by`, engine::pick) in the
-- same hash aggregate as the other figures, instead of a window that sorts every answer by
-- customer.
nps_stats AS (
    SELECT customer_id,
           last_by(CAST(score AS BIGINT), CAST(response_ts AS BIGINT), response_id) AS nps_last,
           AVG(CASE WHEN in_w THEN CAST(score AS DOUBLE) END) AS nps_mean_365d,
           SUM(CASE WHEN in_w THEN 1 ELSE 0 END) AS nps_responses_365d
    FROM answers
    GROUP BY customer_id
),
share_stats AS (
    SELECT referrer_id AS customer_id, COUNT(*) AS shares_365d
    FROM referral_events
    WHERE event_type = 'share' AND event_ts < ${as_of}
      AND CAST(event_ts AS BIGINT) >= ${window_start_ns}
    GROUP BY referrer_id
),
conversion_stats AS (
    SELECT referrer_id AS customer_id,
           COUNT(*) AS referrals_converted_total,
           SUM(CASE WHEN first_service_ns >= ${window_start_ns} THEN 1 ELSE 0 END) AS referrals_converted_365d
    FROM int_referral_signups
    WHERE eligible
    GROUP BY referrer_id
),
final AS (
    SELECT c.customer_id,
           c.service_center_id,
           c.advisor_id,
           c.segment,
           c.vehicle_model,
           CAST(${as_of_days} - CAST(c.delivery_date AS INT) AS INT) AS tenure_days,
           CAST(c.delivery_date AS INT) < ${as_of_days} AS delivered,
           CAST((${as_of_ns} - v.last_visit_ns) / ${day_ns} AS INT) AS days_since_last_visit,
           CAST(COALESCE(v.visits_90d, 0) AS INT) AS visits_90d,
           CAST(COALESCE(v.visits_365d, 0) AS INT) AS visits_365d,
           CAST(COALESCE(v.visits_total, 0) AS INT) AS visits_total,
           CAST(COALESCE(v.revenue_365d, 0) AS DECIMAL(18, 2)) AS revenue_365d,
           CAST(COALESCE(v.value_added_revenue_365d, 0) AS DECIMAL(18, 2)) AS value_added_revenue_365d,
           CAST(COALESCE(v.value_added_visits_365d, 0) AS INT) AS value_added_visits_365d,
           CAST(COALESCE(v.repair_visits_365d, 0) AS INT) AS repair_visits_365d,
           CAST(COALESCE(v.roadside_365d, 0) AS INT) AS roadside_365d,
           v.avg_wait_minutes_365d,
           CAST(n.nps_last AS INT) AS nps_last,
           n.nps_mean_365d,
           CAST(COALESCE(n.nps_responses_365d, 0) AS INT) AS nps_responses_365d,
           CAST(COALESCE(s.shares_365d, 0) AS INT) AS shares_365d,
           CAST(COALESCE(r.referrals_converted_total, 0) AS INT) AS referrals_converted_total,
           CAST(COALESCE(r.referrals_converted_365d, 0) AS INT) AS referrals_converted_365d,
           c.referred_by IS NOT NULL AS acquired_by_referral,
           g.generation,
           c.community_member,
           c.social_shares_90d,
           c.marketing_consent,
           c.referral_tracking_opt_out
    -- Every customer, with each figure where it has one. Written as right joins nested to the
    -- right so that the customers' wide rows are what streams through the joins (the probe
    -- side) and each figure table is a join's build side: a left join builds on its left side,
    -- which would hold the customers' rows once per join (at 10M, GBs).
    FROM int_referral_generations g
    RIGHT JOIN (conversion_stats r
        RIGHT JOIN (share_stats s
            RIGHT JOIN (nps_stats n
                RIGHT JOIN (visit_stats v
                    RIGHT JOIN customers c ON v.customer_id = c.customer_id)
                ON n.customer_id = c.customer_id)
            ON s.customer_id = c.customer_id)
        ON r.customer_id = c.customer_id)
    ON g.customer_id = c.customer_id
)
SELECT * FROM final ORDER BY customer_id
