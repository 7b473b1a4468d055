-- int_referral_generations (intermediate: not published)
-- Grain:    one row per accepted CRM customer.
-- Inputs:   crm_customers (accepted rows).
-- Contract: none (internal); consumed by int_signup_facts and customer_features.
-- Order:    none. Its readers look customers up in it by customer_id (joins) or count it.
-- Rule (domain.md, Referral attribution): generation(c) = 1 when referred_by is null or names no
-- accepted CRM customer, else 1 + generation(referred_by). Customers on a referred_by cycle, or
-- whose chain reaches one, are never reached by the recursion and get a null generation.
-- Shape:    most customers were referred by nobody: they are generation 1 without a join, and
--           they never enter the recursion. It starts from the referred customers whose
--           generation one lookup of their referrer settles (no such referrer: 1; an unreferred
--           one: 2) and walks the other referred customers only, so no step joins or holds the
--           whole CRM (at 10M it did, every step: 13.4 s of a 285 s run).
WITH RECURSIVE
referred AS (
    SELECT customer_id, referred_by
    FROM crm_customers
    WHERE referred_by IS NOT NULL
),
-- The referred customers whose referrer is not an accepted customer (a root, generation 1) or is
-- one referred by nobody (generation 2).
settled AS (
    SELECT r.customer_id, CASE WHEN p.customer_id IS NULL THEN 1 ELSE 2 END AS generation
    FROM referred r
    LEFT JOIN crm_customers p ON p.customer_id = r.referred_by
    WHERE p.customer_id IS NULL OR p.referred_by IS NULL
),
chain (customer_id, generation) AS (
    SELECT customer_id, CAST(generation AS BIGINT) AS generation FROM settled
    UNION ALL
    SELECT r.customer_id, chain.generation + 1
    FROM referred r
    JOIN chain ON r.referred_by = chain.customer_id
),
final AS (
    SELECT customer_id, CAST(1 AS INT) AS generation
    FROM crm_customers
    WHERE referred_by IS NULL
    UNION ALL
    SELECT r.customer_id, CAST(g.generation AS INT) AS generation
    FROM referred r
    LEFT JOIN chain g ON g.customer_id = r.customer_id
)
SELECT * FROM final
