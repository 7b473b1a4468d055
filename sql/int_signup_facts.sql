-- int_signup_facts (intermediate: not published)
-- Grain:    one row per `signup` event before as_of, of every referrer: what its flags are
--           computed from, gathered by the joins and aggregates over the referral events and the
--           CRM. No rule is applied here: `int_referral_signups` applies them.
-- Inputs:   referral_events, crm_customers (accepted rows), int_referral_generations.
-- Contract: none (internal).
-- Why its own table: every fact here is the same when computed as of an earlier day boundary T
--           and then restricted to T, which lets training compute these joins once (at the run
--           date) for every snapshot: the rows of signups before T; duplicate_signup (the first
--           signup of a key is the earliest, so it is before T when any is);
--           referrer_signups_that_day (T is midnight UTC, so a signup's whole day lies before
--           it); referee_customer_id, known from referee_known_ns on (the first event that names
--           it is the earliest); first_service_ns (the earliest first service, so before T when
--           any is); and the CRM and generation columns, which do not depend on the date.
-- Rules:    domain.md, "Referral attribution". Durations are compared in exact nanoseconds; a
--           UTC day is 86,400 s.
WITH
events AS (
    SELECT event_id, event_type, share_id, referrer_id, channel, referee_key, referee_customer_id,
           event_ts, CAST(event_ts AS BIGINT) AS ts_ns
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
-- by signup instant, then event_id: `first_by`, engine::pick) instead of a window: no sort of the
-- signups by key, and one scan of the events instead of two.
first_signups AS (
    SELECT referee_key,
           first_by(signup_event_id, signup_ns, signup_event_id) AS signup_event_id
    FROM signup_events
    WHERE referee_key IS NOT NULL
    GROUP BY referee_key
),
referrer_days AS (
    SELECT referrer_id, signup_day, COUNT(*) AS referrer_signups_that_day
    FROM signup_events
    GROUP BY referrer_id, signup_day
),
-- The referee's customer id: the first non-null referee_customer_id on any event of the key
-- (earliest; ties: the smaller event_id), in one hash aggregate, and the instant of that event.
referee_ids AS (
    SELECT referee_key,
           first_by(referee_customer_id, ts_ns, event_id) AS referee_customer_id,
           MIN(ts_ns) AS referee_known_ns
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
-- The facts are gathered in narrow tables keyed by the signup, each joined on its own keys, and
-- joined to the signups' wide rows once, on signup_event_id: under a memory budget the joins are
-- sort-merge joins (engine::session::choose_joins), and each join key sorts its rows again; the
-- joins of one key share a sort, so the wide rows are sorted once instead of once per key.
-- What the referee key says: whether this signup is its first (a signup without a key has no
-- first: it is a duplicate), the referee's customer id and that customer's CRM delivery date.
referee_facts AS (
    SELECT s.signup_event_id,
           -- Not the key's first signup, or no key. Written with IS NOT NULL so that the column
           -- stays typed as never null, as it always was (DataFusion types `IS NOT TRUE`,
           -- `IS DISTINCT FROM` and `COALESCE(…, FALSE)` as nullable ones).
           NULLIF(s.signup_event_id, f.signup_event_id) IS NOT NULL AS duplicate_signup,
           r.referee_customer_id, r.referee_known_ns, referee.delivery_date AS referee_delivery_date
    FROM signup_events s
    LEFT JOIN first_signups f ON f.referee_key = s.referee_key
    LEFT JOIN referee_ids r ON r.referee_key = s.referee_key
    LEFT JOIN crm_customers referee ON referee.customer_id = r.referee_customer_id
),
-- What the referrer says: its signups that UTC day, its CRM row and its generation.
referrer_facts AS (
    SELECT s.signup_event_id, d.referrer_signups_that_day,
           ref.customer_id IS NOT NULL AS referrer_in_crm,
           ref.contact_hash AS referrer_contact_hash,
           ref.referral_tracking_opt_out AS referrer_tracking_opt_out,
           ref.service_center_id AS referrer_service_center_id,
           gen.generation AS referrer_crm_generation
    FROM signup_events s
    JOIN referrer_days d ON d.referrer_id = s.referrer_id AND d.signup_day = s.signup_day
    LEFT JOIN crm_customers ref ON ref.customer_id = s.referrer_id
    LEFT JOIN int_referral_generations gen ON gen.customer_id = s.referrer_id
)
-- Every signup has exactly one row in referee_facts and in referrer_facts (left joins on
-- unique keys; its own day is among its referrer's days), so the inner joins drop none.
-- The narrow tables come first: under hash joins the left side of a join is the one held in
-- memory, so each join holds a narrow table and the wide signup rows stream past them (written
-- the other way round, every join held the wide rows, and the rows it had gathered so far: 6 GB
-- at 10M customers).
SELECT s.signup_event_id, s.referee_key, k.referee_customer_id, k.referee_known_ns,
       k.referee_delivery_date,
       s.referrer_id, rf.referrer_in_crm, rf.referrer_contact_hash, rf.referrer_tracking_opt_out,
       rf.referrer_service_center_id, rf.referrer_crm_generation,
       s.share_id, s.channel, s.signup_ts, s.signup_ns, rf.referrer_signups_that_day,
       k.duplicate_signup, f.first_service_ts, f.first_service_ns
FROM first_services f
RIGHT JOIN (
    referee_facts k
    JOIN (
        referrer_facts rf
        JOIN signup_events s ON s.signup_event_id = rf.signup_event_id
    ) ON k.signup_event_id = s.signup_event_id
) ON f.signup_event_id = s.signup_event_id
