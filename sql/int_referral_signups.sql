-- int_referral_signups (intermediate: not published)
-- Grain:    one row per `signup` event before as_of, of every referrer, with its first_service,
--           every flag (self_referral, existing_customer, velocity, duplicate_signup), converted
--           and eligible. Materialised on its own so that `int_referrals` (conversion order, rewards,
--           ladder) reads it as a table instead of recomputing these joins for each use.
-- Inputs:   referral_events, crm_customers (accepted rows), int_referral_generations.
-- Contract: none (internal); referral_attribution publishes its person-level columns.
-- Rules:    domain.md, "Referral attribution". Durations are compared in exact nanoseconds; a
--           UTC day is 86,400 s.
WITH
events AS (
    SELECT event_id, event_type, share_id, referrer_id, channel, referee_key, referee_customer_id,
           reward_points, event_ts, CAST(event_ts AS BIGINT) AS ts_ns
    FROM referral_events
    WHERE event_ts < ${as_of}
),
signup_events AS (
    SELECT event_id AS signup_event_id, referrer_id, share_id, channel, referee_key,
           event_ts AS signup_ts, ts_ns AS signup_ns, ts_ns / ${day_ns} AS signup_day
    FROM events
    WHERE event_type = 'signup'
),
-- The first signup of each key (earliest; ties: the smaller event_id); every other is a
-- duplicate (a signup without a key has no first: it is a duplicate). One hash aggregate (first
-- by signup instant, then event_id) instead of a window: no sort of the signups by key, and one
-- scan of the events instead of two.
first_signups AS (
    SELECT referee_key,
           first_value(signup_event_id ORDER BY signup_ns, signup_event_id) AS signup_event_id
    FROM signup_events
    WHERE referee_key IS NOT NULL
    GROUP BY referee_key
),
referrer_days AS (
    SELECT referrer_id, signup_day, COUNT(*) AS referrer_signups_that_day
    FROM signup_events
    GROUP BY referrer_id, signup_day
),
signups AS (
    SELECT s.*, d.referrer_signups_that_day, f.signup_event_id IS NULL AS duplicate_signup
    FROM signup_events s
    JOIN referrer_days d ON d.referrer_id = s.referrer_id AND d.signup_day = s.signup_day
    LEFT JOIN first_signups f ON f.signup_event_id = s.signup_event_id
),
-- The referee's customer id: the first non-null referee_customer_id on any event of the key
-- (earliest; ties: the smaller event_id), in one hash aggregate.
referee_ids AS (
    SELECT referee_key,
           first_value(referee_customer_id ORDER BY ts_ns, event_id) AS referee_customer_id
    FROM events
    WHERE referee_customer_id IS NOT NULL AND referee_key IS NOT NULL
    GROUP BY referee_key
),
-- The earliest first_service of the same key at or after each signup (any share_id).
first_services AS (
    SELECT s.signup_event_id, MIN(e.ts_ns) AS first_service_ns, MIN(e.event_ts) AS first_service_ts
    FROM signup_events s
    JOIN events e ON e.referee_key = s.referee_key AND e.event_type = 'first_service' AND e.ts_ns >= s.signup_ns
    GROUP BY s.signup_event_id
),
flagged AS (
    SELECT s.*,
           r.referee_customer_id,
           f.first_service_ns,
           f.first_service_ts,
           f.first_service_ns IS NOT NULL
               AND f.first_service_ns - s.signup_ns <= ${attribution_window_days} * ${day_ns} AS converted,
           COALESCE(s.referee_key = ref.contact_hash, FALSE)
               OR COALESCE(r.referee_customer_id = s.referrer_id, FALSE) AS self_referral,
           COALESCE(CAST(referee.delivery_date AS INT) < s.signup_ns / ${day_ns}, FALSE) AS existing_customer,
           s.referrer_signups_that_day > ${max_signups_per_referrer_per_day} AS velocity,
           COALESCE(ref.referral_tracking_opt_out, FALSE) AS referrer_opted_out,
           ref.service_center_id AS referrer_service_center_id,
           -- A referrer missing from the CRM is generation 1 (domain.md); on a cycle: null.
           CASE WHEN ref.customer_id IS NULL THEN 1 ELSE gen.generation END AS referrer_generation
    FROM signups s
    LEFT JOIN referee_ids r ON r.referee_key = s.referee_key
    LEFT JOIN first_services f ON f.signup_event_id = s.signup_event_id
    LEFT JOIN crm_customers ref ON ref.customer_id = s.referrer_id
    LEFT JOIN int_referral_generations gen ON gen.customer_id = s.referrer_id
    LEFT JOIN crm_customers referee ON referee.customer_id = r.referee_customer_id
),
-- The one place that says which signups count: no flag at all ("unflagged"); eligible = unflagged
-- and converted.
unflagged AS (
    SELECT *,
           NOT (self_referral OR existing_customer OR velocity OR duplicate_signup) AS unflagged
    FROM flagged
),
eligibility AS (
    SELECT *, converted AND unflagged AS eligible
    FROM unflagged
)
SELECT signup_event_id, referee_key, referee_customer_id, referrer_id, referrer_service_center_id,
       share_id, channel, signup_ts, signup_ns, first_service_ts, first_service_ns, converted,
       self_referral, existing_customer, velocity, duplicate_signup, unflagged, eligible,
       referrer_opted_out, referrer_generation
FROM eligibility
