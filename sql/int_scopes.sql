-- int_scopes (intermediate: not published)
-- Grain:    one row per scope of the KPI tables: `network` and each service_center_id of the
--           accepted CRM rows (a center with no customer left in the CRM has no scope).
-- Inputs:   crm_customers (accepted rows).
-- Contract: none (internal); the scope column of referral_kpis, lifecycle_health,
--           channel_funnel and referred_vs_other.
SELECT 'network' AS scope
UNION
SELECT DISTINCT service_center_id AS scope FROM crm_customers
