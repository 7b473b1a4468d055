-- int_referral_signups (intermediate: not published)
-- Grain:    one row per `signup` event before as_of, of every referrer, with its first_service,
--           every flag (self_referral, existing_customer, velocity, duplicate_signup), converted
--           and eligible. Materialised on its own so that `int_referrals` (conversion order, rewards,
--           ladder) and customer_features read the flags as a table instead of recomputing them
--           for each use.
-- Inputs:   int_signup_facts (the joins and aggregates, computed as of this run date or, in
--           training, as of a later one: what was not known by as_of is dropped here first).
-- Contract: none (internal); referral_attribution publishes its person-level columns.
-- Rules:    domain.md, "Referral attribution". Durations are compared in exact nanoseconds; a
--           UTC day is 86,400 s.
WITH
-- The facts as they stood at as_of: the signups before it; a referee id (and the referee's CRM
-- row) and a first service only when known before it (an unknown instant is null: not known).
known AS (
    SELECT signup_event_id, referrer_id, share_id, channel, referee_key, signup_ts, signup_ns,
           referrer_signups_that_day, duplicate_signup,
           CASE WHEN referee_known_ns < ${as_of_ns} THEN referee_customer_id END AS referee_customer_id,
           CASE WHEN referee_known_ns < ${as_of_ns} THEN referee_delivery_date END AS referee_delivery_date,
           CASE WHEN first_service_ns < ${as_of_ns} THEN first_service_ns END AS first_service_ns,
           CASE WHEN first_service_ns < ${as_of_ns} THEN first_service_ts END AS first_service_ts,
           referrer_in_crm, referrer_contact_hash, referrer_tracking_opt_out,
           referrer_service_center_id, referrer_crm_generation
    FROM int_signup_facts
    WHERE signup_ns < ${as_of_ns}
),
flagged AS (
    SELECT s.*,
           s.first_service_ns IS NOT NULL
               AND s.first_service_ns - s.signup_ns <= ${attribution_window_days} * ${day_ns} AS converted,
           COALESCE(s.referee_key = s.referrer_contact_hash, FALSE)
               OR COALESCE(s.referee_customer_id = s.referrer_id, FALSE) AS self_referral,
           COALESCE(CAST(s.referee_delivery_date AS INT) < s.signup_ns / ${day_ns}, FALSE) AS existing_customer,
           s.referrer_signups_that_day > ${max_signups_per_referrer_per_day} AS velocity,
           COALESCE(s.referrer_tracking_opt_out, FALSE) AS referrer_opted_out,
           -- A referrer missing from the CRM is generation 1 (domain.md); on a cycle: null.
           CASE WHEN NOT s.referrer_in_crm THEN 1 ELSE s.referrer_crm_generation END AS referrer_generation
    FROM known s
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
