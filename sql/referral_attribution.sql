-- referral_attribution
-- Grain:    one row per `signup` event before as_of whose referrer has not opted out of referral
--           tracking (domain.md: opted-out referrers appear in no person-level row).
-- Inputs:   int_referrals.
-- Contract: data-contracts/referral_attribution.odcs.yaml
-- Output:   referral_attribution/dt=D/
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
       eligible,
       referrer_generation,
       conversion_seq,
       points_owed,
       reward_event_id,
       reward_ts,
       reward_points,
       reward_status
FROM int_referrals
WHERE NOT referrer_opted_out
ORDER BY signup_ts, signup_event_id
