-- int_kpi_bands (intermediate: not published)
-- Grain:    one row per KPI table (`referral_kpis`, `lifecycle_health`) and KPI: its position on
--           the dashboard, how it is valued and its band edges (domain.md, "KPI tables").
-- Inputs:   none: the client's bands, said once here.
-- Contract: none (internal); read by sql/referral_kpis.sql and sql/lifecycle_health.sql to band
--           each KPI, and by the morning report to draw the edges on the trend sparklines.
-- Rules:    kind 'ratio': edges in hundredths of the ratio (30 = 0.30); kind 'nps': edges in NPS
--           points. A band's edge is the lowest value that reaches it. The referral dashboard
--           bands excellent / qualified / danger, lifecycle health excellent / good / pass /
--           danger; an edge a table does not use is null, and a KPI without edges
--           (k_factor) has no band.
SELECT source, pos, kpi, kind,
       CAST(excellent AS BIGINT) AS excellent,
       CAST(good AS BIGINT) AS good,
       CAST(qualified AS BIGINT) AS qualified,
       CAST(pass AS BIGINT) AS pass
FROM (VALUES
    ('referral_kpis', 1, 'referral_rate', 'ratio', 30, NULL, 15, NULL),
    ('referral_kpis', 2, 'referrals_per_referrer', 'ratio', 300, NULL, 150, NULL),
    ('referral_kpis', 3, 'referral_conversion_rate', 'ratio', 80, NULL, 60, NULL),
    ('referral_kpis', 4, 'referred_nps', 'nps', 85, NULL, 75, NULL),
    ('referral_kpis', 5, 'second_generation_rate', 'ratio', 25, NULL, 15, NULL),
    ('referral_kpis', 6, 'participation_rate', 'ratio', 30, NULL, 15, NULL),
    ('referral_kpis', 7, 'reward_fulfillment_rate', 'ratio', 95, NULL, 80, NULL),
    ('referral_kpis', 8, 'k_factor', 'ratio', NULL, NULL, NULL, NULL),
    ('lifecycle_health', 1, 'acquisition_visit_rate', 'ratio', 40, 30, NULL, 20),
    ('lifecycle_health', 2, 'activation_nps', 'nps', 85, 75, NULL, 65),
    ('lifecycle_health', 3, 'retention_rate', 'ratio', 70, 60, NULL, 50),
    ('lifecycle_health', 4, 'value_added_penetration', 'ratio', 30, 20, NULL, 10),
    ('lifecycle_health', 5, 'referral_rate', 'ratio', 20, 15, NULL, 10)
) AS bands (source, pos, kpi, kind, excellent, good, qualified, pass)
