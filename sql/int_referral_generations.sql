-- int_referral_generations (intermediate: not published)
-- Grain:    one row per accepted CRM customer.
-- Inputs:   crm_customers (accepted rows).
-- Contract: none (internal); consumed by int_signup_facts and customer_features.
-- Order:    none. Its readers look customers up in it by customer_id (joins) or count it.
-- Rule (domain.md, Referral attribution): generation(c) = 1 when referred_by is null or names no
-- accepted CRM customer, else 1 + generation(referred_by). Customers on a referred_by cycle, or
-- whose chain reaches one, are never reached by the recursion and get a null generation.
WITH RECURSIVE
roots AS (
    SELECT c.customer_id
    FROM crm_customers c
    LEFT JOIN crm_customers p ON p.customer_id = c.referred_by
    WHERE c.referred_by IS NULL OR p.customer_id IS NULL
),
chain (customer_id, generation) AS (
    SELECT customer_id, CAST(1 AS BIGINT) AS generation FROM roots
    UNION ALL
    SELECT c.customer_id, chain.generation + 1
    FROM crm_customers c
    JOIN chain ON c.referred_by = chain.customer_id
    -- Implied by the join, but said so that each step's scan drops the unreferred customers
    -- before they are shuffled and sorted (every step reads the whole CRM again).
    WHERE c.referred_by IS NOT NULL
),
final AS (
    SELECT c.customer_id, CAST(g.generation AS INT) AS generation
    FROM crm_customers c
    LEFT JOIN chain g ON g.customer_id = c.customer_id
)
SELECT * FROM final
