-- referral_kpis
-- Grain:    one row per run date, scope (`network` or a CRM service_center_id) and KPI of the
--           referral dashboard (domain.md, "KPI tables", seed 000).
-- Inputs:   int_scopes, customer_features, int_referrals, nps_responses, int_kpi_bands.
-- Contract: data-contracts/referral_kpis.odcs.yaml
-- Output:   referral_kpis/dt=D/
-- Rules:    customers count in their home center; a referral in its referrer's home center (a
--           referrer missing from the CRM: network only). Opted-out referrers count here.
--           Ratio bands compare exactly in integers (numerator × 100 >= edge × denominator, edges
--           in hundredths); NPS is rounded to one decimal (halves away from zero, in integers)
--           and banded on the rounded value. A zero denominator gives a null value and band.
WITH
scopes AS (
    SELECT scope FROM int_scopes
),
customers AS (
    SELECT service_center_id,
           visits_365d > 0 AS active,
           referrals_converted_365d > 0 AS converting_referrer,
           shares_365d > 0 AS sharer,
           acquired_by_referral
    FROM customer_features
),
-- Network and center counts in one pass per table: a grouping set per scope, then folded by scope
-- name (a center whose id were `network` would add into the network row, as int_scopes lists it
-- once; a distinct count there stays the network's, whose referrers include the center's).
customer_groups AS (
    SELECT CASE WHEN grouping(service_center_id) = 1 THEN 'network' ELSE service_center_id END AS scope,
           SUM(CASE WHEN active THEN 1 ELSE 0 END) AS active,
           SUM(CASE WHEN active AND converting_referrer THEN 1 ELSE 0 END) AS active_referrers,
           SUM(CASE WHEN active AND sharer THEN 1 ELSE 0 END) AS active_sharers,
           SUM(CASE WHEN active AND acquired_by_referral THEN 1 ELSE 0 END) AS active_referred,
           SUM(CASE WHEN active AND acquired_by_referral AND converting_referrer THEN 1 ELSE 0 END) AS active_referred_referrers
    FROM customers
    GROUP BY GROUPING SETS ((), (service_center_id))
),
customer_counts AS (
    SELECT scope,
           SUM(active) AS active,
           SUM(active_referrers) AS active_referrers,
           SUM(active_sharers) AS active_sharers,
           SUM(active_referred) AS active_referred,
           SUM(active_referred_referrers) AS active_referred_referrers
    FROM customer_groups
    GROUP BY scope
),
referral_facts AS (
    SELECT referrer_id, referrer_service_center_id, eligible, converted, reward_status,
           unflagged,
           signup_ns >= ${window_start_ns}
               AND signup_ns < ${as_of_ns} - ${attribution_window_days} * ${day_ns} AS matured,
           eligible AND first_service_ns >= ${window_start_ns} AS conversion_in_w,
           eligible AND first_service_ns >= ${window_start_ns}
               AND first_service_ns < ${as_of_ns} - ${day_ns} AS reward_due
    FROM int_referrals
),
-- Referrals of a referrer missing from the CRM have no center: network only.
referral_groups AS (
    SELECT CASE WHEN grouping(referrer_service_center_id) = 1 THEN 'network'
                ELSE referrer_service_center_id END AS scope,
           SUM(CASE WHEN conversion_in_w THEN 1 ELSE 0 END) AS conversions_w,
           COUNT(DISTINCT CASE WHEN conversion_in_w THEN referrer_id END) AS converting_referrers_w,
           SUM(CASE WHEN unflagged AND matured THEN 1 ELSE 0 END) AS matured_referrals,
           SUM(CASE WHEN unflagged AND matured AND converted THEN 1 ELSE 0 END) AS matured_converted,
           SUM(CASE WHEN reward_due THEN 1 ELSE 0 END) AS rewards_due,
           SUM(CASE WHEN reward_due AND reward_status = 'issued_on_time' THEN 1 ELSE 0 END) AS rewards_on_time
    FROM referral_facts
    GROUP BY GROUPING SETS ((), (referrer_service_center_id))
),
referral_counts AS (
    SELECT scope,
           SUM(conversions_w) AS conversions_w,
           MAX(converting_referrers_w) AS converting_referrers_w,
           SUM(matured_referrals) AS matured_referrals,
           SUM(matured_converted) AS matured_converted,
           SUM(rewards_due) AS rewards_due,
           SUM(rewards_on_time) AS rewards_on_time
    FROM referral_groups
    WHERE scope IS NOT NULL
    GROUP BY scope
),
answers AS (
    SELECT f.service_center_id, n.score
    FROM nps_responses n
    JOIN customer_features f ON f.customer_id = n.customer_id
    WHERE f.acquired_by_referral
      AND n.response_ts < ${as_of}
      AND CAST(n.response_ts AS BIGINT) >= ${window_start_ns}
),
answer_groups AS (
    SELECT CASE WHEN grouping(service_center_id) = 1 THEN 'network' ELSE service_center_id END AS scope,
           SUM(nps_point(score)) AS net_promoters,
           COUNT(*) AS responses
    FROM answers
    GROUP BY GROUPING SETS ((), (service_center_id))
),
nps_counts AS (
    SELECT scope,
           SUM(net_promoters) AS net_promoters,
           SUM(responses) AS responses
    FROM answer_groups
    GROUP BY scope
),
counts AS (
    SELECT s.scope,
           COALESCE(c.active, 0) AS active,
           COALESCE(c.active_referrers, 0) AS active_referrers,
           COALESCE(c.active_sharers, 0) AS active_sharers,
           COALESCE(c.active_referred, 0) AS active_referred,
           COALESCE(c.active_referred_referrers, 0) AS active_referred_referrers,
           COALESCE(r.conversions_w, 0) AS conversions_w,
           COALESCE(r.converting_referrers_w, 0) AS converting_referrers_w,
           COALESCE(r.matured_referrals, 0) AS matured_referrals,
           COALESCE(r.matured_converted, 0) AS matured_converted,
           COALESCE(r.rewards_due, 0) AS rewards_due,
           COALESCE(r.rewards_on_time, 0) AS rewards_on_time,
           COALESCE(n.net_promoters, 0) AS net_promoters,
           COALESCE(n.responses, 0) AS responses
    FROM scopes s
    LEFT JOIN customer_counts c ON c.scope = s.scope
    LEFT JOIN referral_counts r ON r.scope = s.scope
    LEFT JOIN nps_counts n ON n.scope = s.scope
),
-- The measures of each KPI; sql/int_kpi_bands.sql gives its position, kind and band edges.
measures AS (
    SELECT scope, 'referral_rate' AS kpi, active_referrers AS numerator, active AS denominator FROM counts
    UNION ALL
    SELECT scope, 'referrals_per_referrer', conversions_w, converting_referrers_w FROM counts
    UNION ALL
    SELECT scope, 'referral_conversion_rate', matured_converted, matured_referrals FROM counts
    UNION ALL
    SELECT scope, 'referred_nps', net_promoters, responses FROM counts
    UNION ALL
    SELECT scope, 'second_generation_rate', active_referred_referrers, active_referred FROM counts
    UNION ALL
    SELECT scope, 'participation_rate', active_sharers, active FROM counts
    UNION ALL
    SELECT scope, 'reward_fulfillment_rate', rewards_on_time, rewards_due FROM counts
    UNION ALL
    SELECT scope, 'k_factor', conversions_w, active FROM counts
),
kpis AS (
    SELECT m.scope, b.pos, m.kpi, m.numerator, m.denominator, b.kind, b.excellent, b.qualified
    FROM measures m
    JOIN int_kpi_bands b ON b.source = 'referral_kpis' AND b.kpi = m.kpi
),
valued AS (
    SELECT *,
           -- NPS × 10, rounded half away from zero, in integers.
           CASE WHEN kind = 'nps' THEN nps_tenths(numerator, denominator) END AS nps_tenths
    FROM kpis
),
final AS (
    SELECT ${run_date} AS dt,
           scope,
           kpi,
           CAST(numerator AS BIGINT) AS numerator,
           CAST(denominator AS BIGINT) AS denominator,
           CASE WHEN denominator = 0 THEN CAST(NULL AS DOUBLE)
                WHEN kind = 'nps' THEN CAST(nps_tenths AS DOUBLE) / 10.0
                ELSE CAST(numerator AS DOUBLE) / CAST(denominator AS DOUBLE) END AS value,
           CASE WHEN denominator = 0 OR excellent IS NULL THEN CAST(NULL AS VARCHAR)
                WHEN meets_edge(kind, numerator, denominator, excellent) THEN 'excellent'
                WHEN meets_edge(kind, numerator, denominator, qualified) THEN 'qualified'
                ELSE 'danger' END AS band,
           pos
    FROM valued
)
SELECT dt, scope, kpi, numerator, denominator, value, band
FROM final
ORDER BY CASE WHEN scope = 'network' THEN 0 ELSE 1 END, scope, pos
