-- int_referrals (intermediate: not published)
-- Grain:    one row per `signup` event before as_of, of every referrer. Opted-out referrers are
--           kept here so that every aggregate (KPIs, funnels) still counts their referrals; the
--           person-level table referral_attribution leaves them out.
-- Inputs:   int_referral_signups (flags and eligibility), referral_events (rewards).
-- Contract: none (internal); referral_attribution publishes its person-level columns.
-- Rules:    domain.md, "Referral attribution" and "Reward ladder". Durations are compared in
--           exact nanoseconds; a UTC day is 86,400 s.
-- Order:    none. Its readers aggregate it into integer counts (channel_funnel, referral_kpis)
--           or sort it by a total order (referral_attribution: signup_ts, signup_event_id), so
--           sorting it here too sorted the 1.4M rows at 1M customers twice.
WITH
-- The n-th eligible conversion of each referrer (by first_service, then signup, then key),
-- ranked over the eligible rows only.
conversion_order AS (
    SELECT signup_event_id,
           ROW_NUMBER() OVER (PARTITION BY referrer_id
                              ORDER BY first_service_ns, signup_ns, referee_key) AS conversion_seq
    FROM int_referral_signups
    WHERE eligible
),
sequenced AS (
    SELECT s.*, o.conversion_seq
    FROM int_referral_signups s
    LEFT JOIN conversion_order o ON o.signup_event_id = s.signup_event_id
),
-- The reward of a converted, non-duplicate row: the earliest reward_issued of the same key at or
-- after its first_service (ties: the smaller event_id).
rewards AS (
    SELECT signup_event_id, reward_event_id, reward_ns, reward_ts, reward_points
    FROM (
        SELECT s.signup_event_id, e.event_id AS reward_event_id, CAST(e.event_ts AS BIGINT) AS reward_ns,
               e.event_ts AS reward_ts, e.reward_points,
               ROW_NUMBER() OVER (PARTITION BY s.signup_event_id
                                  ORDER BY CAST(e.event_ts AS BIGINT), e.event_id) AS rn
        FROM int_referral_signups s
        JOIN referral_events e ON e.referee_key = s.referee_key AND e.event_type = 'reward_issued'
                              AND e.event_ts < ${as_of}
                              AND CAST(e.event_ts AS BIGINT) >= s.first_service_ns
        WHERE s.converted AND NOT s.duplicate_signup
    ) t
    WHERE rn = 1
),
-- Cumulative points after the n-th eligible conversion (domain.md, Reward ladder).
laddered AS (
    SELECT s.*, w.reward_event_id, w.reward_ns, w.reward_ts, w.reward_points,
           CASE WHEN s.eligible THEN
               (CASE WHEN conversion_seq = 1 THEN 500 WHEN conversion_seq = 2 THEN 1200
                     WHEN conversion_seq = 3 THEN 2100 WHEN conversion_seq = 4 THEN 2600
                     WHEN conversion_seq <= 9 THEN 4000 + 500 * (conversion_seq - 5)
                     ELSE 10000 + 500 * (conversion_seq - 10) END)
             - (CASE WHEN conversion_seq = 1 THEN 0 WHEN conversion_seq = 2 THEN 500
                     WHEN conversion_seq = 3 THEN 1200 WHEN conversion_seq = 4 THEN 2100
                     WHEN conversion_seq = 5 THEN 2600
                     WHEN conversion_seq <= 10 THEN 4000 + 500 * (conversion_seq - 6)
                     ELSE 10000 + 500 * (conversion_seq - 11) END)
           ELSE 0 END AS points_owed
    FROM sequenced s
    LEFT JOIN rewards w ON w.signup_event_id = s.signup_event_id
),
final AS (
    SELECT signup_event_id,
           referee_key,
           referee_customer_id,
           referrer_id,
           referrer_service_center_id,
           share_id,
           channel,
           signup_ts,
           first_service_ts,
           converted,
           self_referral,
           existing_customer,
           velocity,
           duplicate_signup,
           unflagged,
           eligible,
           CAST(referrer_generation AS INT) AS referrer_generation,
           CAST(conversion_seq AS INT) AS conversion_seq,
           CAST(points_owed AS INT) AS points_owed,
           reward_event_id,
           reward_ts,
           CAST(reward_points AS INT) AS reward_points,
           CASE
               WHEN NOT eligible AND reward_event_id IS NULL THEN 'none'
               WHEN NOT eligible THEN 'issued_unearned'
               WHEN reward_event_id IS NOT NULL AND reward_ns - first_service_ns <= ${day_ns} THEN 'issued_on_time'
               WHEN reward_event_id IS NOT NULL THEN 'issued_late'
               WHEN first_service_ns + ${day_ns} >= ${as_of_ns} THEN 'pending'
               ELSE 'owed'
           END AS reward_status,
           referrer_opted_out,
           signup_ns,
           first_service_ns
    FROM laddered
)
SELECT * FROM final
