-- channel_funnel
-- Grain:    one row per run date, scope (`network` or a CRM service_center_id) and share channel
--           (all seven, zero rows included).
-- Inputs:   int_scopes, crm_customers, referral_events, int_referrals.
-- Contract: data-contracts/channel_funnel.odcs.yaml
-- Output:   channel_funnel/dt=D/
-- Rules:    share, click and signup events in W counted by each event's own channel (every event
--           row counts, opted-out referrers included); eligible conversions in W by the
--           referral's (signup's) channel. Events and referrals belong to the referrer's home
--           center (a referrer missing from the CRM: network only). Step rates are null on a
--           zero denominator.
WITH
scopes AS (
    SELECT scope FROM int_scopes
),
channels AS (
    SELECT column1 AS channel, column2 AS pos
    FROM (VALUES ('wechat_chat', 1), ('wechat_moments', 2), ('wecom', 3), ('sms', 4), ('email', 5),
                 ('qr_offline', 6), ('app_link', 7)) AS t
),
events_w AS (
    SELECT e.event_type, e.channel, c.service_center_id
    FROM referral_events e
    LEFT JOIN crm_customers c ON c.customer_id = e.referrer_id
    WHERE e.event_type IN ('share', 'click', 'signup')
      AND e.event_ts < ${as_of}
      AND CAST(e.event_ts AS BIGINT) >= ${window_start_ns}
),
-- Network and center counts in one pass: a grouping set per scope (events of a referrer missing
-- from the CRM have no center and count in the network only), folded by scope name (a center
-- whose id were `network` would add into the network row, as int_scopes lists it once).
event_groups AS (
    SELECT CASE WHEN grouping(service_center_id) = 1 THEN 'network' ELSE service_center_id END AS scope,
           channel,
           SUM(CASE WHEN event_type = 'share' THEN 1 ELSE 0 END) AS shares,
           SUM(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS clicks,
           SUM(CASE WHEN event_type = 'signup' THEN 1 ELSE 0 END) AS signups
    FROM events_w
    GROUP BY GROUPING SETS ((channel), (service_center_id, channel))
),
event_counts AS (
    SELECT scope, channel,
           SUM(shares) AS shares,
           SUM(clicks) AS clicks,
           SUM(signups) AS signups
    FROM event_groups
    WHERE scope IS NOT NULL
    GROUP BY scope, channel
),
conversions_w AS (
    SELECT channel, referrer_service_center_id
    FROM int_referrals
    WHERE eligible AND first_service_ns >= ${window_start_ns}
),
conversion_groups AS (
    SELECT CASE WHEN grouping(referrer_service_center_id) = 1 THEN 'network'
                ELSE referrer_service_center_id END AS scope,
           channel,
           COUNT(*) AS conversions
    FROM conversions_w
    GROUP BY GROUPING SETS ((channel), (referrer_service_center_id, channel))
),
conversion_counts AS (
    SELECT scope, channel, SUM(conversions) AS conversions
    FROM conversion_groups
    WHERE scope IS NOT NULL
    GROUP BY scope, channel
),
final AS (
    SELECT ${run_date} AS dt,
           s.scope,
           ch.channel,
           CAST(COALESCE(e.shares, 0) AS BIGINT) AS shares,
           CAST(COALESCE(e.clicks, 0) AS BIGINT) AS clicks,
           CAST(COALESCE(e.signups, 0) AS BIGINT) AS signups,
           CAST(COALESCE(v.conversions, 0) AS BIGINT) AS eligible_conversions,
           ch.pos
    FROM scopes s
    CROSS JOIN channels ch
    LEFT JOIN event_counts e ON e.scope = s.scope AND e.channel = ch.channel
    LEFT JOIN conversion_counts v ON v.scope = s.scope AND v.channel = ch.channel
)
SELECT dt, scope, channel, shares, clicks, signups, eligible_conversions,
       CASE WHEN shares = 0 THEN CAST(NULL AS DOUBLE) ELSE CAST(clicks AS DOUBLE) / CAST(shares AS DOUBLE) END AS click_rate,
       CASE WHEN clicks = 0 THEN CAST(NULL AS DOUBLE) ELSE CAST(signups AS DOUBLE) / CAST(clicks AS DOUBLE) END AS signup_rate,
       CASE WHEN signups = 0 THEN CAST(NULL AS DOUBLE) ELSE CAST(eligible_conversions AS DOUBLE) / CAST(signups AS DOUBLE) END AS conversion_rate
FROM final
ORDER BY CASE WHEN scope = 'network' THEN 0 ELSE 1 END, scope, pos
