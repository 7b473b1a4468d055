//! Demo data: `flywheel generate` writes the four input exports as domain.md describes them, with
//! behaviour planted for the models to learn (see README, "Demo data"):
//! - referring grows with satisfaction (NPS), visit frequency, community membership and sharing;
//! - churn (no more visits) grows with detractor scores, long waits and repair-heavy histories and
//!   falls with value-added purchases.
//!
//! It also plants what the pipeline must catch: self-referrals, velocity bursts, duplicate
//! signups, existing customers signing up, late and missing rewards, opt-outs, and a handful of
//! rows that break the contracts. One xorshift generator per customer, seeded from (seed,
//! customer), makes the files byte-identical for a seed.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Int32Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use tracing::info;

use crate::contracts;
use crate::engine::encode::{parquet_props, ParquetSink};
use crate::engine::run_date::{DAY_NS as DAY, HOUR_NS as HOUR};
use crate::engine::RunDate;
use crate::error::Result;
use crate::storage::Root;

/// SplitMix64: small, fast, and the same on every platform and crate version.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f().max(1e-12);
        let u2 = self.f();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Exponential waiting time with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f()).max(1e-12).ln()
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub const CENTERS: usize = 40;
const MODELS: [&str; 6] = ["Model 3", "Model Y", "Model S", "Model X", "ES6", "ET5"];
const CHANNELS: [&str; 7] = [
    "wechat_chat",
    "wechat_moments",
    "wecom",
    "sms",
    "email",
    "qr_offline",
    "app_link",
];
const NPS_CHANNELS: [&str; 4] = ["sms", "app", "email", "phone"];

/// Latent traits of one customer; the features the models see are noisy views of these.
struct Traits {
    satisfaction: f64,
    visit_rate: f64,
    repair_share: f64,
    value_added: f64,
    wait_level: f64,
    churn_hazard: f64,
    refer_rate: f64,
}

#[derive(Default)]
struct Columns {
    // crm_customers
    c_id: Vec<String>,
    c_center: Vec<String>,
    c_advisor: Vec<Option<String>>,
    c_segment: Vec<String>,
    c_model: Vec<String>,
    c_delivery: Vec<i32>,
    c_channel: Vec<String>,
    c_referred_by: Vec<Option<String>>,
    c_contact: Vec<String>,
    c_community: Vec<bool>,
    c_shares: Vec<i32>,
    c_consent: Vec<bool>,
    c_optout: Vec<bool>,
    c_updated: Vec<i64>,
    // visits
    v_id: Vec<String>,
    v_customer: Vec<String>,
    v_center: Vec<String>,
    v_ts: Vec<i64>,
    v_type: Vec<String>,
    v_revenue: Vec<i128>,
    v_va: Vec<i128>,
    v_wait: Vec<Option<i32>>,
    // nps_responses
    n_id: Vec<String>,
    n_customer: Vec<String>,
    n_visit: Vec<Option<String>>,
    n_ts: Vec<i64>,
    n_score: Vec<i32>,
    n_channel: Vec<String>,
    // referral_events
    e_id: Vec<String>,
    e_type: Vec<String>,
    e_ts: Vec<i64>,
    e_share: Vec<String>,
    e_referrer: Vec<String>,
    e_channel: Vec<String>,
    e_key: Vec<Option<String>>,
    e_customer: Vec<Option<String>>,
    e_points: Vec<Option<i32>>,
    // Rows of each log already written (ids count on across flushes).
    v_written: usize,
    n_written: usize,
    e_written: usize,
}

impl Columns {
    /// One referral event of `link`.
    fn event(
        &mut self,
        link: &Link,
        kind: &str,
        ts: i64,
        key: Option<&str>,
        customer: Option<&str>,
        points: Option<i32>,
    ) {
        let n = self.e_written + self.e_id.len();
        self.e_id.push(format!("E{n:09}"));
        self.e_type.push(kind.to_string());
        self.e_ts.push(ts);
        self.e_share.push(link.share.to_string());
        self.e_referrer.push(link.referrer.to_string());
        self.e_channel.push(link.channel.to_string());
        self.e_key.push(key.map(str::to_string));
        self.e_customer.push(customer.map(str::to_string));
        self.e_points.push(points);
    }
}

/// The shared link every referral event belongs to.
struct Link<'a> {
    share: &'a str,
    referrer: &'a str,
    channel: &'a str,
}

impl Columns {
    /// share → signup an hour later → first_service `fs_after` after the share, by `customer`.
    fn converting_signup(
        &mut self,
        link: &Link,
        share_ts: i64,
        key: &str,
        fs_after: i64,
        customer: &str,
    ) {
        self.event(link, "share", share_ts, None, None, None);
        self.event(link, "signup", share_ts + HOUR, Some(key), None, None);
        self.event(
            link,
            "first_service",
            share_ts + fs_after,
            Some(key),
            Some(customer),
            None,
        );
    }
}

pub fn customer_id(i: usize) -> String {
    format!("CU{i:08}")
}

fn contact_hash(seed: u64, i: usize) -> String {
    let mut r = Rng::new(seed ^ 0xC0FFEE, i as u64);
    format!("h{:016x}", r.next_u64())
}

pub struct Summary {
    pub customers: usize,
    pub visits: usize,
    pub nps_responses: usize,
    pub referral_events: usize,
}

/// What every pass of the generator shares: the seed, the size and the export date.
struct World {
    seed: u64,
    customers: usize,
    as_of_days: i32,
    as_of_ns: i64,
    /// Three years before as_of: visits and referrals of the generated history start here.
    history_start: i64,
}

/// Rows of a log gathered before they are written: the logs stream to their files in chunks, so
/// memory holds the customers and one chunk, not every visit and event.
const CHUNK_ROWS: usize = 262_144;

/// Generate the four inputs for `customers` customers as of `as_of` into `out`.
pub async fn generate(out: &Root, customers: usize, seed: u64, as_of: &RunDate) -> Result<Summary> {
    let as_of_ns = as_of.as_of_ns();
    let w = World {
        seed,
        customers,
        as_of_days: as_of.epoch_days() as i32,
        as_of_ns,
        history_start: as_of_ns - 3 * 365 * DAY,
    };
    let mut cols = Columns::default();
    let traits = customers_pass(&w, &mut cols);
    let referrals = referred_customers(&w, &traits, &mut cols);
    let plants = Plants::plan(&w, &traits, &mut cols);
    let mut logs = Logs::new(out, as_of_ns);
    for (i, t) in traits.iter().enumerate() {
        customer_visits(&w, i, t, &mut cols);
        if cols.v_id.len() >= CHUNK_ROWS {
            logs.write_visits(&mut cols, &plants).await?;
        }
    }
    logs.write_visits(&mut cols, &plants).await?;
    let mut shares = Shares(0);
    for &(j, i) in &referrals {
        converted_referral(&w, j, i, &mut cols, &mut shares);
        if cols.e_id.len() >= CHUNK_ROWS {
            logs.write_events(&mut cols).await?;
        }
    }
    for (i, t) in traits.iter().enumerate() {
        other_referral_events(&w, i, t, &mut cols, &mut shares);
        if cols.e_id.len() >= CHUNK_ROWS {
            logs.write_events(&mut cols).await?;
        }
    }
    logs.write_events(&mut cols).await?;
    drop(traits);
    if let Some(c) = plants.segment {
        cols.c_segment[c] = "gold".into();
    }
    let summary = Summary {
        customers: cols.c_id.len(),
        visits: cols.v_written,
        nps_responses: cols.n_written,
        referral_events: cols.e_written,
    };
    logs.finish().await?;
    write_customers(out, cols).await?;
    info!(
        customers = summary.customers,
        visits = summary.visits,
        nps = summary.nps_responses,
        events = summary.referral_events,
        "demo data written"
    );
    Ok(summary)
}

/// Share ids, numbered in the order shares are made.
struct Shares(usize);

impl Shares {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("S{:09}", self.0)
    }
}

/// Pass 1: customers (CRM rows) and their latent traits.
fn customers_pass(w: &World, cols: &mut Columns) -> Vec<Traits> {
    // Centres differ in how long customers wait.
    let center_wait: Vec<f64> = (0..CENTERS)
        .map(|c| Rng::new(w.seed, 1_000_000_000 + c as u64).f() * 1.2 - 0.6)
        .collect();
    (0..w.customers)
        .map(|i| customer(w, i, &center_wait, cols))
        .collect()
}

/// Customer `i`: their CRM row and traits.
fn customer(w: &World, i: usize, center_wait: &[f64], cols: &mut Columns) -> Traits {
    let mut r = Rng::new(w.seed, i as u64);
    let center = (r.below(CENTERS as u64) as usize * r.below(CENTERS as u64) as usize) % CENTERS;
    let satisfaction = r.normal();
    let community = r.chance(sigmoid(-1.2 + 0.9 * satisfaction));
    let social_shares = if r.chance(sigmoid(
        -1.5 + 0.8 * satisfaction + if community { 1.0 } else { 0.0 },
    )) {
        1 + r.below(4) as i32
    } else {
        0
    };
    let visit_rate = 4.0 * (0.3 * r.normal()).exp(); // visits a year
    let repair_share = sigmoid(-1.3 + 0.8 * r.normal());
    let value_added = sigmoid(-1.0 + 0.9 * r.normal());
    let wait_level = center_wait[center] + 0.5 * r.normal();
    // Yearly churn hazard: detractors, long waits and repairs push it up, value-added down.
    let churn_hazard = 0.3
        * (-1.6 * satisfaction + 1.4 * wait_level + 3.5 * (repair_share - 0.25)
            - 3.0 * (value_added - 0.3))
            .exp();
    let refer_rate = 0.35
        * (0.9 * satisfaction
            + 0.45 * (visit_rate / 4.0 - 1.0) * 2.0
            + if community { 0.8 } else { 0.0 }
            + 0.35 * social_shares as f64)
            .exp();
    // Deliveries over the last six years (a few in the coming weeks).
    let delivery = w.as_of_days - 6 * 365 + r.below(6 * 365 + 14) as i32;
    let segment = match r.below(100) {
        0..=79 => "mass",
        80..=94 => "vip",
        _ => "b2b",
    };
    cols.c_id.push(customer_id(i));
    cols.c_center.push(format!("SC{:02}", center + 1));
    cols.c_advisor.push(if r.chance(0.9) {
        Some(format!("ADV{:02}{}", center + 1, r.below(6)))
    } else {
        None
    });
    cols.c_segment.push(segment.into());
    cols.c_model.push(r.pick(&MODELS).to_string());
    cols.c_delivery.push(delivery);
    cols.c_channel
        .push((*r.pick(&["ad", "organic", "event", "other"])).into());
    cols.c_referred_by.push(None);
    cols.c_contact.push(contact_hash(w.seed, i));
    cols.c_community.push(community);
    cols.c_shares.push(social_shares);
    cols.c_consent.push(r.chance(0.9));
    cols.c_optout.push(r.chance(0.03));
    cols.c_updated
        .push(w.as_of_ns - (1 + r.below(30 * 24)) as i64 * HOUR);
    Traits {
        satisfaction,
        visit_rate,
        repair_share,
        value_added,
        wait_level,
        churn_hazard,
        refer_rate,
    }
}

/// Referred customers: about a fifth, referred by an earlier-delivered customer chosen in
/// proportion to their referral rate (a cumulative table and binary search). Returns
/// (referrer, referee) pairs.
fn referred_customers(w: &World, traits: &[Traits], cols: &mut Columns) -> Vec<(usize, usize)> {
    let customers = w.customers;
    let mut cumulative = Vec::with_capacity(customers);
    let mut total = 0.0;
    for t in traits {
        total += t.refer_rate;
        cumulative.push(total);
    }
    let mut referrals: Vec<(usize, usize)> = Vec::new();
    for i in 0..customers {
        let mut r = Rng::new(w.seed ^ 0x5EED, i as u64);
        if !r.chance(0.22) {
            continue;
        }
        for _ in 0..4 {
            let x = r.f() * total;
            let j = cumulative.partition_point(|c| *c < x).min(customers - 1);
            if j != i && cols.c_delivery[j] + 60 < cols.c_delivery[i] {
                cols.c_referred_by[i] = Some(customer_id(j));
                cols.c_channel[i] = if r.chance(0.85) {
                    "referral".into()
                } else {
                    "organic".into()
                };
                referrals.push((j, i));
                break;
            }
        }
    }
    referrals
}

/// What one visit is: its type, bill, value-added part and wait.
struct VisitDraw {
    kind: &'static str,
    revenue: i128,
    va: i128,
    wait: i32,
}

fn draw_visit(r: &mut Rng, t: &Traits, first: bool, busy: bool) -> VisitDraw {
    let kind = if first && r.chance(0.6) {
        "inspection"
    } else if r.chance(t.repair_share) {
        if r.chance(0.6) {
            "repair"
        } else {
            "warranty"
        }
    } else if r.chance(0.06) {
        if r.chance(0.5) {
            "roadside_assistance"
        } else {
            "mobile_service"
        }
    } else if r.chance(0.15) {
        "inspection"
    } else {
        "maintenance"
    };
    let base: f64 = match kind {
        "repair" => 1800.0,
        "warranty" => 200.0,
        "maintenance" => 900.0,
        "inspection" => 300.0,
        _ => 450.0,
    };
    let revenue = (base * (0.4 * r.normal()).exp() * 100.0).round() as i128;
    let va = if r.chance(t.value_added) {
        (revenue as f64 * (0.1 + 0.4 * r.f())).round() as i128
    } else {
        0
    };
    let wait = (25.0 * (t.wait_level + 0.4 * r.normal() + if busy { 0.2 } else { 0.0 }).exp())
        .round() as i32;
    VisitDraw {
        kind,
        revenue,
        va,
        wait,
    }
}

/// Pass 2: the visits of customer `i` and their NPS answers, until as_of or churn.
fn customer_visits(w: &World, i: usize, t: &Traits, cols: &mut Columns) {
    let mut r = Rng::new(w.seed ^ 0x7157, i as u64);
    let id = cols.c_id[i].clone();
    let delivery_ns = cols.c_delivery[i] as i64 * DAY;
    let mut ts = delivery_ns.max(w.history_start)
        + (r.exp(365.0 / t.visit_rate).min(36_500.0) * DAY as f64) as i64;
    // Capped at 50 years: a tiny hazard means the customer never churns here.
    let churn_at = delivery_ns.max(w.history_start)
        + (r.exp(1.0 / t.churn_hazard).min(50.0) * 365.0 * DAY as f64) as i64;
    let mut first = true;
    while ts < w.as_of_ns && ts < churn_at {
        // Seasonality: more visits before winter and summer trips.
        let month = ((ts / DAY + 4) / 30 % 12) as i32;
        let busy = matches!(month, 5 | 6 | 10 | 11);
        let v = draw_visit(&mut r, t, first, busy);
        let visit_ts = ts - ts.rem_euclid(DAY) + 8 * HOUR + (r.f() * 10.0 * HOUR as f64) as i64;
        if visit_ts >= w.as_of_ns {
            break;
        }
        let vid = format!("V{:010}", cols.v_written + cols.v_id.len());
        cols.v_id.push(vid.clone());
        cols.v_customer.push(id.clone());
        cols.v_center.push(if r.chance(0.92) {
            cols.c_center[i].clone()
        } else {
            format!("SC{:02}", 1 + r.below(CENTERS as u64))
        });
        cols.v_ts.push(visit_ts);
        cols.v_type.push(v.kind.into());
        cols.v_revenue.push(v.revenue);
        cols.v_va.push(v.va);
        cols.v_wait.push(if r.chance(0.93) {
            Some(v.wait.max(0))
        } else {
            None
        });
        if r.chance(0.35) {
            nps_answer(w, &mut r, t, &v, visit_ts, &id, vid, cols);
        }
        first = false;
        let busy_factor = if busy { 0.8 } else { 1.1 };
        ts = visit_ts
            + ((365.0 / t.visit_rate * (0.5 + r.f()) * busy_factor).clamp(3.0, 36_500.0)
                * DAY as f64) as i64;
    }
}

/// An NPS answer to visit `vid` (when it arrives before as_of).
#[allow(clippy::too_many_arguments)]
fn nps_answer(
    w: &World,
    r: &mut Rng,
    t: &Traits,
    v: &VisitDraw,
    visit_ts: i64,
    customer: &str,
    vid: String,
    cols: &mut Columns,
) {
    let answer_ts = visit_ts + HOUR + (r.f() * 72.0 * HOUR as f64) as i64;
    if answer_ts >= w.as_of_ns {
        return;
    }
    let mood = t.satisfaction
        - 0.5 * (v.wait as f64 / 25.0 - 1.0)
        - if v.kind == "repair" { 0.3 } else { 0.0 };
    let score = (8.2 + 1.6 * mood + 0.8 * r.normal())
        .round()
        .clamp(0.0, 10.0) as i32;
    cols.n_id
        .push(format!("R{:010}", cols.n_written + cols.n_id.len()));
    cols.n_customer.push(customer.to_string());
    cols.n_visit.push(Some(vid));
    cols.n_ts.push(answer_ts);
    cols.n_score.push(score);
    cols.n_channel.push(r.pick(&NPS_CHANNELS).to_string());
}

/// Pass 3: the events of referrer `j`'s referral of customer `i`, ending in the referee's
/// delivery (first service) and, mostly, a reward.
fn converted_referral(w: &World, j: usize, i: usize, cols: &mut Columns, shares: &mut Shares) {
    let mut r = Rng::new(w.seed ^ 0x4EF, i as u64);
    let referrer = cols.c_id[j].clone();
    let referee = cols.c_id[i].clone();
    let key = cols.c_contact[i].clone();
    let delivery_ns = cols.c_delivery[i] as i64 * DAY;
    let channel = r.pick(&CHANNELS).to_string();
    let share = shares.next();
    let share_ts =
        delivery_ns - (10 + r.below(50)) as i64 * DAY + (r.f() * 12.0 * HOUR as f64) as i64;
    let signup_ts = share_ts + (2 + r.below(70)) as i64 * HOUR;
    let fs_ts = signup_ts + (r.f().powi(2) * 110.0 * DAY as f64) as i64; // some beyond 90 days
    if share_ts >= w.as_of_ns || share_ts < w.history_start - 365 * DAY {
        return;
    }
    let link = Link {
        share: &share,
        referrer: &referrer,
        channel: &channel,
    };
    cols.event(&link, "share", share_ts, None, None, None);
    cols.event(&link, "click", share_ts + HOUR, Some(&key), None, None);
    if signup_ts < w.as_of_ns {
        cols.event(&link, "signup", signup_ts, Some(&key), None, None);
        if r.chance(0.02) {
            // A duplicate signup of the same person through the same link.
            let again = signup_ts + 3 * HOUR;
            cols.event(&link, "signup", again, Some(&key), None, None);
        }
    }
    if fs_ts < w.as_of_ns && r.chance(0.92) {
        cols.event(
            &link,
            "first_service",
            fs_ts,
            Some(&key),
            Some(&referee),
            None,
        );
        let roll = r.f();
        let reward_ts = if roll < 0.88 {
            Some(fs_ts + (r.f() * 20.0 * HOUR as f64) as i64)
        } else if roll < 0.95 {
            Some(fs_ts + (2 + r.below(20)) as i64 * DAY)
        } else {
            None // missing reward: owed
        };
        if let Some(rt) = reward_ts.filter(|rt| *rt < w.as_of_ns) {
            let reward = Some(500);
            cols.event(
                &link,
                "reward_issued",
                rt,
                Some(&key),
                Some(&referee),
                reward,
            );
        }
    }
}

/// The other referral events of customer `i`: invitations that do not (yet) convert (more for a
/// higher referral propensity), and rarely a self-referral, an existing customer signing up, or
/// a velocity burst.
fn other_referral_events(w: &World, i: usize, t: &Traits, cols: &mut Columns, shares: &mut Shares) {
    let mut r = Rng::new(w.seed ^ 0x1A5, i as u64);
    let referrer = cols.c_id[i].clone();
    let start = (cols.c_delivery[i] as i64 * DAY).max(w.history_start);
    let mut ts = start + (r.exp(365.0 / t.refer_rate).min(36_500.0) * DAY as f64) as i64;
    while ts < w.as_of_ns {
        let channel = r.pick(&CHANNELS).to_string();
        let share = shares.next();
        let link = Link {
            share: &share,
            referrer: &referrer,
            channel: &channel,
        };
        cols.event(&link, "share", ts, None, None, None);
        let clicks = r.below(3);
        for c in 0..clicks {
            let key = format!("k{:015x}", r.next_u64() >> 4);
            let click_ts = ts + (c as i64 + 1) * HOUR;
            if click_ts >= w.as_of_ns {
                break;
            }
            cols.event(&link, "click", click_ts, Some(&key), None, None);
            if r.chance(0.35) && click_ts + HOUR < w.as_of_ns {
                cols.event(&link, "signup", click_ts + HOUR, Some(&key), None, None);
            }
        }
        ts += (r.exp(365.0 / t.refer_rate).min(36_500.0) * DAY as f64).max(HOUR as f64) as i64;
    }
    unusual_signups(w, i, &mut r, &referrer, cols, shares);
}

/// Self-referrals, existing customers signing up, and velocity bursts (a handful of referrers
/// sign up many people in one day), for the flags of the attribution.
fn unusual_signups(
    w: &World,
    i: usize,
    r: &mut Rng,
    referrer: &str,
    cols: &mut Columns,
    shares: &mut Shares,
) {
    if r.chance(0.004) {
        let key = cols.c_contact[i].clone();
        let s_ts = w.as_of_ns - (1 + r.below(300)) as i64 * DAY;
        let share = shares.next();
        let ch = r.pick(&CHANNELS).to_string();
        let link = Link {
            share: &share,
            referrer,
            channel: &ch,
        };
        cols.converting_signup(&link, s_ts, &key, 5 * DAY, referrer);
    }
    let customers = w.customers;
    if r.chance(0.004) && customers > 1 {
        let other = (i + 1 + r.below(customers as u64 - 1) as usize) % customers;
        if cols.c_delivery[other] + 30 < w.as_of_days - 200 {
            let key = cols.c_contact[other].clone();
            let other_id = cols.c_id[other].clone();
            let s_ts = w.as_of_ns - (10 + r.below(150)) as i64 * DAY;
            let share = shares.next();
            let ch = r.pick(&CHANNELS).to_string();
            let link = Link {
                share: &share,
                referrer,
                channel: &ch,
            };
            cols.converting_signup(&link, s_ts, &key, 3 * DAY, &other_id);
            let reward_ts = s_ts + 3 * DAY + HOUR;
            cols.event(
                &link,
                "reward_issued",
                reward_ts,
                Some(&key),
                Some(&other_id),
                Some(500),
            );
        }
    }
    if r.chance(0.0005) {
        let day = w.as_of_ns - (5 + r.below(200)) as i64 * DAY + 9 * HOUR;
        let share = shares.next();
        let ch = r.pick(&CHANNELS).to_string();
        let link = Link {
            share: &share,
            referrer,
            channel: &ch,
        };
        cols.event(&link, "share", day, None, None, None);
        for b in 0..(6 + r.below(4)) {
            let key = format!("k{:015x}", r.next_u64() >> 4);
            let at = day + (b as i64 + 1) * 600_000_000_000;
            cols.event(&link, "signup", at, Some(&key), None, None);
        }
    }
}

/// A few rows that break the contracts, so the quarantine shows in the demo (far below 1%):
/// chosen by row number once the number of visits and answers is known (a counting pass), and
/// applied as the rows stream past.
#[derive(Default)]
struct Plants {
    /// (visit row, what to break), in the order they are applied.
    visits: Vec<(usize, usize)>,
    /// A duplicated visit id: row `.1` gets the id of row `.0` (both copies are quarantined).
    duplicate: Option<(usize, usize)>,
    /// An NPS answer scored 11.
    nps: Option<usize>,
    /// A customer in an unknown segment.
    segment: Option<usize>,
}

impl Plants {
    fn plan(w: &World, traits: &[Traits], cols: &mut Columns) -> Plants {
        let (mut n, mut answers) = (0, 0);
        for (i, t) in traits.iter().enumerate() {
            customer_visits(w, i, t, cols);
            (n, answers) = (n + cols.v_id.len(), answers + cols.n_id.len());
            cols.clear_visits();
        }
        let mut r = Rng::new(w.seed ^ 0xBAD, 0);
        if n < 100 || w.customers < 20 {
            return Plants::default();
        }
        let bad = (n / 20_000).clamp(1, 50);
        let visits = (0..bad)
            .map(|k| (r.below(n as u64) as usize, k % 4))
            .collect();
        let i = r.below(n as u64 / 2) as usize;
        let j = n / 2 + r.below(n as u64 / 2) as usize;
        let nps = (answers > 0).then(|| r.below(answers as u64) as usize);
        Plants {
            visits,
            duplicate: Some((i, j)),
            nps,
            segment: Some(r.below(w.customers as u64) as usize),
        }
    }

    /// Break the planted rows among the visits and answers gathered (rows `v0..`, `n0..`).
    fn apply(&self, cols: &mut Columns, v0: usize, n0: usize) {
        let here = |row: usize, len: usize, first: usize| (first..first + len).contains(&row);
        for &(row, kind) in &self.visits {
            if !here(row, cols.v_id.len(), v0) {
                continue;
            }
            let i = row - v0;
            match kind {
                0 => cols.v_type[i] = "Maintenance".into(), // enumerations are case-sensitive
                1 => cols.v_va[i] = cols.v_revenue[i] + 100, // value-added above the bill
                2 => cols.v_customer[i] = "CU_UNKNOWN".into(), // no such customer
                _ => cols.v_revenue[i] = -100,
            }
        }
        if let Some((i, j)) = self.duplicate {
            if here(j, cols.v_id.len(), v0) {
                cols.v_id[j - v0] = format!("V{i:010}");
            }
        }
        if let Some(k) = self.nps {
            if here(k, cols.n_id.len(), n0) {
                cols.n_score[k - n0] = 11;
            }
        }
    }
}

impl Columns {
    fn clear_visits(&mut self) {
        self.v_id.clear();
        self.v_customer.clear();
        self.v_center.clear();
        self.v_ts.clear();
        self.v_type.clear();
        self.v_revenue.clear();
        self.v_va.clear();
        self.v_wait.clear();
        self.n_id.clear();
        self.n_customer.clear();
        self.n_visit.clear();
        self.n_ts.clear();
        self.n_score.clear();
        self.n_channel.clear();
    }
}

fn utc(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

fn money(v: Vec<i128>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(v)
            .with_precision_and_scale(12, 2)
            .expect("decimal(12,2)"),
    )
}

fn strings(v: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn opt_strings(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

async fn write_customers(out: &Root, c: Columns) -> Result<()> {
    let crm = RecordBatch::try_new(
        contracts::contract("crm_customers")?.schema(),
        vec![
            strings(c.c_id),
            strings(c.c_center),
            opt_strings(c.c_advisor),
            strings(c.c_segment),
            strings(c.c_model),
            Arc::new(Date32Array::from(c.c_delivery)),
            strings(c.c_channel),
            opt_strings(c.c_referred_by),
            strings(c.c_contact),
            Arc::new(BooleanArray::from(c.c_community)),
            Arc::new(Int32Array::from(c.c_shares)),
            Arc::new(BooleanArray::from(c.c_consent)),
            Arc::new(BooleanArray::from(c.c_optout)),
            utc(c.c_updated),
        ],
    )?;
    let mut file = ParquetSink::create(
        out,
        "crm_customers/part-00000.parquet",
        crm.schema(),
        parquet_props(),
    )?;
    for at in (0..crm.num_rows()).step_by(CHUNK_ROWS) {
        file.write(&crm.slice(at, CHUNK_ROWS.min(crm.num_rows() - at)))
            .await?;
    }
    file.finish().await?;
    Ok(())
}

/// The log exports being written: one file per log and year, in Hive-style `year=YYYY/`
/// folders, as many exporters write logs.
struct Logs<'a> {
    out: &'a Root,
    as_of_ns: i64,
    files: std::collections::BTreeMap<(&'static str, i32), ParquetSink>,
}

impl<'a> Logs<'a> {
    fn new(out: &'a Root, as_of_ns: i64) -> Logs<'a> {
        Logs {
            out,
            as_of_ns,
            files: Default::default(),
        }
    }

    /// Write the visits and NPS answers gathered so far (with the planted rows broken).
    async fn write_visits(&mut self, c: &mut Columns, plants: &Plants) -> Result<()> {
        plants.apply(c, c.v_written, c.n_written);
        let visits = RecordBatch::try_new(
            contracts::contract("visits")?.schema(),
            vec![
                strings(std::mem::take(&mut c.v_id)),
                strings(std::mem::take(&mut c.v_customer)),
                strings(std::mem::take(&mut c.v_center)),
                utc(c.v_ts.clone()),
                strings(std::mem::take(&mut c.v_type)),
                money(std::mem::take(&mut c.v_revenue)),
                money(std::mem::take(&mut c.v_va)),
                Arc::new(Int32Array::from(std::mem::take(&mut c.v_wait))),
            ],
        )?;
        c.v_written += visits.num_rows();
        self.write_by_year("visits", &visits, &std::mem::take(&mut c.v_ts))
            .await?;
        let nps = RecordBatch::try_new(
            contracts::contract("nps_responses")?.schema(),
            vec![
                strings(std::mem::take(&mut c.n_id)),
                strings(std::mem::take(&mut c.n_customer)),
                opt_strings(std::mem::take(&mut c.n_visit)),
                utc(std::mem::take(&mut c.n_ts)),
                Arc::new(Int32Array::from(std::mem::take(&mut c.n_score))),
                strings(std::mem::take(&mut c.n_channel)),
            ],
        )?;
        c.n_written += nps.num_rows();
        self.write("nps_responses", "nps_responses/part-00000.parquet", 0, &nps)
            .await
    }

    /// Write the referral events gathered so far.
    async fn write_events(&mut self, c: &mut Columns) -> Result<()> {
        let events = RecordBatch::try_new(
            contracts::contract("referral_events")?.schema(),
            vec![
                strings(std::mem::take(&mut c.e_id)),
                strings(std::mem::take(&mut c.e_type)),
                utc(c.e_ts.clone()),
                strings(std::mem::take(&mut c.e_share)),
                strings(std::mem::take(&mut c.e_referrer)),
                strings(std::mem::take(&mut c.e_channel)),
                opt_strings(std::mem::take(&mut c.e_key)),
                opt_strings(std::mem::take(&mut c.e_customer)),
                Arc::new(Int32Array::from(std::mem::take(&mut c.e_points))),
            ],
        )?;
        c.e_written += events.num_rows();
        self.write_by_year("referral_events", &events, &std::mem::take(&mut c.e_ts))
            .await
    }

    async fn write_by_year(
        &mut self,
        table: &'static str,
        batch: &RecordBatch,
        ts: &[i64],
    ) -> Result<()> {
        let row_years: Vec<i32> = ts.iter().map(|t| year_of(*t)).collect();
        let mut years = row_years.clone();
        years.sort_unstable();
        years.dedup();
        for y in years {
            let mask: BooleanArray = row_years.iter().map(|ry| Some(*ry == y)).collect();
            let part = arrow::compute::filter_record_batch(batch, &mask)?;
            let rel = format!("{table}/year={y}/part-00000.parquet");
            self.write(table, &rel, y, &part).await?;
        }
        Ok(())
    }

    async fn write(
        &mut self,
        table: &'static str,
        rel: &str,
        year: i32,
        batch: &RecordBatch,
    ) -> Result<()> {
        let file = match self.files.entry((table, year)) {
            std::collections::btree_map::Entry::Occupied(f) => f.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => v.insert(ParquetSink::create(
                self.out,
                rel,
                batch.schema(),
                parquet_props(),
            )?),
        };
        file.write(batch).await
    }

    /// Finish every file; a log with no rows at all gets one empty file in the year before
    /// as_of, so that its folder exists.
    async fn finish(mut self) -> Result<()> {
        for table in ["visits", "nps_responses", "referral_events"] {
            if !self.files.keys().any(|(t, _)| *t == table) {
                let y = year_of(self.as_of_ns - DAY);
                let rel = if table == "nps_responses" {
                    "nps_responses/part-00000.parquet".to_string()
                } else {
                    format!("{table}/year={y}/part-00000.parquet")
                };
                let empty = RecordBatch::new_empty(contracts::contract(table)?.schema());
                self.write(table, &rel, y, &empty).await?;
            }
        }
        for file in std::mem::take(&mut self.files).into_values() {
            file.finish().await?;
        }
        Ok(())
    }
}

fn year_of(t: i64) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_nanos(t).year()
}
