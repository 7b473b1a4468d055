//! The morning report: `reports/dt=D/index.html`, one self-contained page (inline CSS and SVG, no
//! script, no external resource) for managers: the referral dashboard and lifecycle health with
//! their bands, the AARRR and channel funnels as charts, the champion models' quality (ROC curve,
//! calibration, lift), what changed since the previous run and each KPI's trend (see
//! [`super::trends`]), the models' drift and the list sizes per center.
//!
//! Everything on the page comes from the tables of the run and the champion model files, so the
//! same run gives the same bytes: locations, clock times and the scorer's notes (which depend on the
//! registry's history) are left to the manifest, so a rerun, or the same data read from S3 or
//! with pandas-style types, gives the same report. Numbers keep their full value in `data-value` attributes (for
//! tests and scrapers); the text shows them rounded.

use std::collections::BTreeMap;
use std::fmt::Write;

use flywheel_models::Metrics;

use crate::engine::Table;
use crate::steps::ingest::InputCheck;
use crate::steps::scoring::ModelFile;

use super::page::{band_badge, cell, count, display_value, esc, float, label, rows};
use super::trends;

/// What the report is made of.
pub struct ReportInput<'a> {
    pub date: String,
    pub tables: &'a BTreeMap<String, Table>,
    pub champions: &'a BTreeMap<String, ModelFile>,
    pub checks: &'a [InputCheck],
    pub warnings: &'a [String],
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:16px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c5cad3;font-size:13px}
main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border-radius:8px;padding:12px 20px 18px;margin:18px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:18px;margin:8px 0 12px}h3{font-size:15px;margin:14px 0 8px}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{padding:4px 8px;border-bottom:1px solid #e4e6ea;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.band{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.b-excellent{background:#d3f2dc;color:#11652e}.b-qualified,.b-good{background:#fdf0c4;color:#7a5800}.b-pass{background:#fde2c4;color:#8a4300}
.b-danger{background:#fbd5d5;color:#9b1c1c}.b-none{background:#eceef1;color:#5b6270}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #e4e6ea;border-radius:8px;padding:10px 14px;min-width:180px}
.card .v{font-size:24px;font-weight:600}.card .k{font-size:12px;color:#5b6270}.card .f{font-size:12px;color:#5b6270}
.charts{display:flex;flex-wrap:wrap;gap:20px}
.scroll{overflow-x:auto}.muted{color:#5b6270;font-size:13px}
svg text{font-family:inherit;font-size:11px;fill:#1d2330}
"#;

/// Ambassador candidates and churn alerts per home center (the summary and the report).
pub(crate) fn list_sizes_per_center(
    tables: &BTreeMap<String, Table>,
) -> BTreeMap<String, (u64, u64)> {
    let mut per_center: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (b, i) in rows(tables.get("ambassador_candidates")) {
        per_center
            .entry(cell(b, "service_center_id", i).unwrap_or_default())
            .or_default()
            .0 += 1;
    }
    for (b, i) in rows(tables.get("churn_alerts")) {
        per_center
            .entry(cell(b, "service_center_id", i).unwrap_or_default())
            .or_default()
            .1 += 1;
    }
    per_center
}

/// One row of a long KPI table (referral_kpis, lifecycle_health).
struct Kpi {
    scope: String,
    kpi: String,
    numerator: Option<f64>,
    denominator: Option<f64>,
    value: Option<f64>,
    band: Option<String>,
}

fn kpis(t: Option<&Table>) -> Vec<Kpi> {
    rows(t)
        .map(|(b, i)| Kpi {
            scope: cell(b, "scope", i).unwrap_or_default(),
            kpi: cell(b, "kpi", i).unwrap_or_default(),
            numerator: float(b, "numerator", i),
            denominator: float(b, "denominator", i),
            value: float(b, "value", i),
            band: cell(b, "band", i),
        })
        .collect()
}

/// Network cards and a per-center matrix for one long KPI table.
fn kpi_section(out: &mut String, table: &str, title: &str, intro: &str, all: &[Kpi]) {
    let _ = write!(
        out,
        r#"<section id="{table}"><h2>{title}</h2><p class="muted">{intro}</p><div class="cards">"#
    );
    for k in all.iter().filter(|k| k.scope == "network") {
        let _ = write!(
            out,
            r#"<div class="card"><div class="k">{label}</div><div class="v" data-table="{table}" data-scope="network" data-kpi="{kpi}" data-value="{raw}">{shown}</div><div class="f">{num} / {den}</div>{badge}</div>"#,
            label = esc(&label(&k.kpi)),
            kpi = esc(&k.kpi),
            raw = k.value.map(|v| v.to_string()).unwrap_or_default(),
            shown = display_value(&k.kpi, k.value),
            num = count(k.numerator),
            den = count(k.denominator),
            badge = band_badge(k.band.as_deref()),
        );
    }
    out.push_str("</div>");
    // Centers × KPIs, in the table's order.
    let mut names: Vec<&str> = Vec::new();
    for k in all {
        if !names.contains(&k.kpi.as_str()) {
            names.push(&k.kpi);
        }
    }
    let mut centers: BTreeMap<&str, BTreeMap<&str, &Kpi>> = BTreeMap::new();
    for k in all.iter().filter(|k| k.scope != "network") {
        centers.entry(&k.scope).or_default().insert(&k.kpi, k);
    }
    if !centers.is_empty() {
        let _ = write!(
            out,
            r#"<h3>Per service center</h3><div class="scroll"><table><thead><tr><th>center</th>"#
        );
        for n in &names {
            let _ = write!(out, r#"<th class="num">{}</th>"#, esc(&label(n)));
        }
        out.push_str("</tr></thead><tbody>");
        for (center, ks) in &centers {
            let _ = write!(out, "<tr><td>{}</td>", esc(center));
            for n in &names {
                match ks.get(n) {
                    Some(k) => {
                        let _ = write!(
                            out,
                            r#"<td class="num"><span class="band b-{band}" data-table="{table}" data-scope="{scope}" data-kpi="{kpi}">{shown}</span></td>"#,
                            band = esc(k.band.as_deref().unwrap_or("none")),
                            scope = esc(center),
                            kpi = esc(n),
                            shown = display_value(n, k.value),
                        );
                    }
                    None => out.push_str("<td></td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</section>");
}

/// Horizontal bars: (label, value, note shown after the bar).
fn hbars(
    id: &str,
    title: &str,
    items: &[(String, f64, String)],
    colour: &str,
    (left, row): (f64, f64),
) -> String {
    let w = 470.0 + left;
    let h = 30.0 + row * items.len() as f64;
    let max = items.iter().map(|i| i.1).fold(0.0, f64::max);
    let span = w - left - 170.0;
    let mut s = format!(
        r#"<svg id="{id}" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><text x="0" y="14" font-weight="600">{t}</text>"#,
        t = esc(title)
    );
    for (k, (name, v, note)) in items.iter().enumerate() {
        let y = 24.0 + row * k as f64;
        let bw = if max > 0.0 { span * v / max } else { 0.0 };
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{name}</text><rect x="{left}" y="{y}" width="{bw:.1}" height="{bh}" fill="{colour}"/><text x="{vx:.1}" y="{ty}">{v} {note}</text>"#,
            lx = left - 6.0,
            ty = y + row / 2.0 + 2.0,
            bh = row - 6.0,
            name = esc(name),
            vx = left + bw + 6.0,
            note = esc(note),
        );
    }
    s.push_str("</svg>");
    s
}

/// A square plot on [0,1]² with a dashed diagonal: lines and/or points.
fn unit_plot(
    id: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    line: &[(f64, f64)],
    points: &[(f64, f64)],
) -> String {
    let (size, pad) = (260.0, 36.0);
    let total = size + pad + 16.0;
    let px = |x: f64| pad + x.clamp(0.0, 1.0) * size;
    let py = |y: f64| 22.0 + (1.0 - y.clamp(0.0, 1.0)) * size;
    let mut s = format!(
        r##"<svg id="{id}" role="img" aria-label="{t}" width="{total}" height="{th}" viewBox="0 0 {total} {th}"><text x="0" y="12" font-weight="600">{t}</text><rect x="{pad}" y="22" width="{size}" height="{size}" fill="none" stroke="#c5cad3"/><line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#9aa1ad" stroke-dasharray="4 4"/>"##,
        t = esc(title),
        th = size + 60.0,
        x0 = px(0.0),
        y0 = py(0.0),
        x1 = px(1.0),
        y1 = py(1.0),
    );
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            r#"<text x="{x}" y="{y}" text-anchor="middle">{t}</text><text x="{lx}" y="{ly}" text-anchor="end">{t}</text>"#,
            x = px(t),
            y = py(0.0) + 14.0,
            lx = pad - 4.0,
            ly = py(t) + 4.0,
        );
    }
    let _ = write!(
        s,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{xl}</text><text transform="translate(10 {yy}) rotate(-90)" text-anchor="middle">{yl}</text>"#,
        x = pad + size / 2.0,
        y = py(0.0) + 30.0,
        xl = esc(x_label),
        yy = 22.0 + size / 2.0,
        yl = esc(y_label),
    );
    if !line.is_empty() {
        let pts: Vec<String> = line
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#2563eb" stroke-width="2"/>"##,
            pts.join(" ")
        );
    }
    for (x, y) in points {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#2563eb"/>"##,
            px(*x),
            py(*y)
        );
    }
    s.push_str("</svg>");
    s
}

/// Lift by score decile as vertical bars, with the line lift = 1.
fn lift_chart(id: &str, m: &Metrics) -> String {
    let (w, h, pad) = (300.0, 200.0, 30.0);
    let max = m
        .lift_by_decile
        .iter()
        .filter_map(|d| d.lift)
        .fold(1.0, f64::max);
    let bw = (w - pad) / 10.0;
    let y = |v: f64| 20.0 + (h - 20.0) * (1.0 - v / max);
    let mut s = format!(
        r##"<svg id="{id}" role="img" aria-label="lift by decile" width="{w}" height="{th}" viewBox="0 0 {w} {th}"><text x="0" y="12" font-weight="600">Lift by score decile (1 = top 10%)</text>"##,
        th = h + 34.0
    );
    for d in &m.lift_by_decile {
        let v = d.lift.unwrap_or(0.0);
        let x = pad + bw * (d.decile as f64 - 1.0);
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="{top:.1}" width="{bwi:.1}" height="{hh:.1}" fill="#0f9d58"><title>decile {dec}: lift {v:.2}</title></rect><text x="{cx:.1}" y="{ly}" text-anchor="middle">{dec}</text>"##,
            top = y(v),
            bwi = bw - 3.0,
            hh = (h - y(v)).max(0.0),
            dec = d.decile,
            cx = x + bw / 2.0,
            ly = h + 14.0,
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{pad}" y1="{y1:.1}" x2="{w}" y2="{y1:.1}" stroke="#9b1c1c" stroke-dasharray="4 4"/><text x="0" y="{ty:.1}">1.0</text><text x="0" y="24">{max:.1}</text></svg>"##,
        y1 = y(1.0),
        ty = y(1.0) + 4.0,
    );
    s
}

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

fn model_section(out: &mut String, champions: &BTreeMap<String, ModelFile>) {
    out.push_str(r#"<section id="models"><h2>Model quality (champion models, holdout)</h2>"#);
    for target in ["refer", "churn"] {
        let Some(f) = champions.get(target) else {
            let _ = write!(
                out,
                r#"<h3>p_{target}</h3><p class="muted">No model: the {target} scores of this run are null (no champion and too little history to train one).</p>"#
            );
            continue;
        };
        let m = &f.holdout_metrics;
        let _ = write!(
            out,
            r#"<h3 data-model="{target}">p_{target} — version {v}</h3><p class="muted">Trained on the snapshot {tr}, evaluated out of time on the snapshot {ho} ({rows} holdout rows, {pos} positive).</p><table><tbody><tr><th>ROC AUC</th><td class="num" data-metric="{target}_roc_auc">{auc}</td><th>PR AUC</th><td class="num">{pr}</td><th>Base rate</th><td class="num">{br}</td></tr><tr><th>Log loss</th><td class="num">{ll}</td><th>Brier</th><td class="num">{brier}</td><th>Lift, top decile</th><td class="num">{lift}</td></tr></tbody></table><div class="charts">"#,
            v = esc(&f.version),
            tr = esc(&f.train_snapshot),
            ho = esc(&f.holdout_snapshot),
            rows = m.rows,
            pos = m.positives,
            auc = f3(m.roc_auc),
            pr = f3(m.pr_auc),
            br = f3(m.base_rate),
            ll = f3(m.log_loss),
            brier = f3(m.brier),
            lift = f3(m.lift_top_decile),
        );
        out.push_str(&unit_plot(
            &format!("roc-{target}"),
            "ROC curve",
            "false positive rate",
            "true positive rate",
            &m.roc_curve,
            &[],
        ));
        let cal: Vec<(f64, f64)> = m
            .calibration
            .iter()
            .filter_map(|b| Some((b.mean_predicted?, b.observed_rate?)))
            .collect();
        out.push_str(&unit_plot(
            &format!("calibration-{target}"),
            "Calibration (10 bins)",
            "mean predicted",
            "observed rate",
            &cal,
            &cal,
        ));
        if m.lift_by_decile.is_empty() {
            out.push_str(r#"<p class="muted">This model file has no lift by decile (trained by an earlier version).</p>"#);
        } else {
            out.push_str(&lift_chart(&format!("lift-{target}"), m));
        }
        out.push_str("</div>");
    }
    out.push_str("</section>");
}

/// The champions' drift figures (PSI against the training snapshot), scores first, then the
/// features from the most drifted down.
fn drift_section(out: &mut String, drift: Option<&Table>) {
    out.push_str(r#"<section id="drift"><h2>Model drift (PSI against the champion's training snapshot)</h2><p class="muted">Population stability index over the training deciles: below 0.1 stable, 0.1–0.25 watch, above 0.25 retrain.</p>"#);
    let mut rows: Vec<(String, String, String, f64, String)> = rows(drift)
        .map(|(b, i)| {
            (
                cell(b, "target", i).unwrap_or_default(),
                cell(b, "kind", i).unwrap_or_default(),
                cell(b, "variable", i).unwrap_or_default(),
                float(b, "psi", i).unwrap_or(f64::NAN),
                cell(b, "reading", i).unwrap_or_default(),
            )
        })
        .collect();
    if rows.is_empty() {
        out.push_str(r#"<p class="muted">No drift figures: no champion has a drift reference (models trained before drift figures existed; retrain).</p></section>"#);
        return;
    }
    rows.sort_by(|a, b| {
        (&a.0, b.1.as_str(), b.3, &a.2)
            .partial_cmp(&(&b.0, a.1.as_str(), a.3, &b.2))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out.push_str(r#"<table><thead><tr><th>model</th><th>variable</th><th class="num">PSI</th><th>reading</th></tr></thead><tbody>"#);
    for (target, kind, variable, psi, reading) in rows {
        let name = if kind == "score" {
            format!("<b>p_{} (score)</b>", esc(&target))
        } else {
            esc(&variable)
        };
        let _ = write!(
            out,
            r#"<tr data-drift="{t}:{v}"><td>{t}</td><td>{name}</td><td class="num">{psi:.3}</td><td class="band {reading}">{reading}</td></tr>"#,
            t = esc(&target),
            v = esc(&variable),
            reading = esc(&reading),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The realised quality of earlier scores whose horizon has passed.
fn outcome_section(out: &mut String, outcomes: Option<&Table>) {
    out.push_str(r#"<section id="outcomes"><h2>How earlier scores turned out</h2><p class="muted">For each model, the scores published on the latest run date at least a horizon ago, against what the customers then did (labels as in training): a realised ROC AUC well below the version's training holdout AUC is a model decaying in use.</p>"#);
    let rows: Vec<_> = rows(outcomes).collect();
    if rows.is_empty() {
        out.push_str(r#"<p class="muted">No earlier run date in the output is a horizon old yet (refer: 90 days, churn: 180 days by default).</p></section>"#);
        return;
    }
    out.push_str(r#"<table><thead><tr><th>model</th><th>scored on</th><th>version</th><th class="num">customers</th><th class="num">positives</th><th class="num">realised AUC</th><th class="num">training AUC</th><th class="num">change</th></tr></thead><tbody>"#);
    for (b, i) in rows {
        let target = cell(b, "target", i).unwrap_or_default();
        let version = cell(b, "model_version", i).unwrap_or_else(|| "–".into());
        let champion = cell(b, "is_champion", i).as_deref() == Some("true");
        let auc = |c: &str| float(b, c, i).map_or("–".into(), f3);
        let _ = write!(
            out,
            r#"<tr data-outcome="{t}" data-realised-auc="{raw}"><td>p_{t}</td><td>{d}</td><td>{v}{ch}</td><td class="num">{n}</td><td class="num">{p}</td><td class="num">{r}</td><td class="num">{tr}</td><td class="num">{c}</td></tr>"#,
            t = esc(&target),
            raw = float(b, "realised_auc", i)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            d = esc(&cell(b, "scored_date", i).unwrap_or_default()),
            v = esc(&version),
            ch = if champion { " (champion)" } else { "" },
            n = count(float(b, "rows", i)),
            p = count(float(b, "positives", i)),
            r = auc("realised_auc"),
            tr = auc("training_auc"),
            c = float(b, "auc_change", i).map_or("–".into(), |v| format!("{v:+.3}")),
        );
    }
    out.push_str("</tbody></table></section>");
}

pub fn html(r: &ReportInput) -> String {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>flywheel — {date}</title><style>{CSS}</style></head><body><header><h1>flywheel morning report — {date}</h1><p>The files of this run are under <code>&lt;table&gt;/dt={date}/</code> beside <code>reports/</code>; the run manifest, with the input location, timings and notes, is <code>_runs/dt={date}/manifest.json</code>.</p></header><main>"#,
        date = esc(&r.date),
    );

    inputs_section(&mut out, r);
    kpi_section(
        &mut out,
        "referral_kpis",
        "Referral dashboard",
        "Window: the 365 days before the run date. Bands per domain rules (excellent / qualified / danger).",
        &kpis(r.tables.get("referral_kpis")),
    );
    kpi_section(
        &mut out,
        "lifecycle_health",
        "Lifecycle health",
        "Network and per-center health of each stage (excellent / good / pass / danger).",
        &kpis(r.tables.get("lifecycle_health")),
    );
    out.push_str(r#"<section id="funnels"><h2>Funnels</h2><div class="charts">"#);
    aarrr_funnel(&mut out, r);
    channel_funnel(&mut out, r);
    out.push_str("</div></section>");
    model_section(&mut out, r.champions);
    let trends = trends::Trends::of(r.tables);
    trends::since_previous_section(&mut out, &trends);
    trends::trends_section(&mut out, &trends);
    drift_section(&mut out, r.tables.get("model_drift"));
    outcome_section(&mut out, r.tables.get("model_outcomes"));
    lists_section(&mut out, r);
    out.push_str("</tbody></table></section></main></body></html>\n");
    out
}

/// Inputs and warnings.
fn inputs_section(out: &mut String, r: &ReportInput) {
    out.push_str(r#"<section id="inputs"><h2>Inputs</h2><table><thead><tr><th>input</th><th class="num">rows</th><th class="num">rejected</th><th class="num">used</th></tr></thead><tbody>"#);
    for c in r.checks {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&c.input),
            c.rows,
            c.rejected,
            c.used
        );
    }
    out.push_str("</tbody></table>");
    for w in r.warnings {
        let _ = write!(out, r#"<p class="muted">⚠ {}</p>"#, esc(w));
    }
    out.push_str("</section>");
}

/// The AARRR funnel of the network and its diagnosis.
fn aarrr_funnel(out: &mut String, r: &ReportInput) {
    if let Some((b, i)) = rows(r.tables.get("lifecycle_diagnosis"))
        .find(|(b, i)| cell(b, "scope", *i).as_deref() == Some("network"))
    {
        let steps = [
            ("customers_delivered", "Delivered"),
            ("activated", "Activated"),
            ("active", "Active"),
            ("retained", "Retained"),
            ("value_added", "Value added"),
            ("referring", "Referring"),
        ];
        let first = float(b, "customers_delivered", i).unwrap_or(0.0);
        let items: Vec<(String, f64, String)> = steps
            .iter()
            .map(|(col, name)| {
                let v = float(b, col, i).unwrap_or(0.0);
                let share = if first > 0.0 {
                    format!("({:.1}%)", 100.0 * v / first)
                } else {
                    String::new()
                };
                (name.to_string(), v, share)
            })
            .collect();
        out.push_str(&hbars(
            "aarrr",
            "AARRR funnel (network)",
            &items,
            "#2563eb",
            (150.0, 26.0),
        ));
        let _ = write!(
            out,
            r#"<p data-diagnosis="network">Diagnosis: <b>{}</b> ({} excellent stages)</p>"#,
            esc(&label(&cell(b, "diagnosis", i).unwrap_or_default())),
            cell(b, "excellent_stages", i).unwrap_or_default()
        );
    }
}

/// The channel funnel of the network: each channel's steps as bars on one scale.
fn channel_funnel(out: &mut String, r: &ReportInput) {
    let mut items = Vec::new();
    for (b, i) in rows(r.tables.get("channel_funnel")) {
        if cell(b, "scope", i).as_deref() != Some("network") {
            continue;
        }
        let ch = cell(b, "channel", i).unwrap_or_default();
        for (col, step) in [
            ("shares", "shares"),
            ("clicks", "clicks"),
            ("signups", "signups"),
            ("eligible_conversions", "conversions"),
        ] {
            items.push((
                format!("{ch} · {step}"),
                float(b, col, i).unwrap_or(0.0),
                String::new(),
            ));
        }
    }
    if !items.is_empty() {
        out.push_str(&hbars(
            "channels",
            "Channel funnel (network)",
            &items,
            "#7c3aed",
            (200.0, 18.0),
        ));
    }
}

/// List sizes per center (the table is closed by the caller).
fn lists_section(out: &mut String, r: &ReportInput) {
    let per_center = list_sizes_per_center(r.tables);
    let (ta, tc) = per_center
        .values()
        .fold((0, 0), |(a, c), (x, y)| (a + x, c + y));
    let _ = write!(
        out,
        r#"<section id="lists"><h2>CRM lists</h2><p>Ambassador candidates: <b data-list="ambassador_candidates">{ta}</b> · churn alerts: <b data-list="churn_alerts">{tc}</b> (Parquet under <code>lists/&lt;list&gt;/dt={date}/</code>, CSV for the CRM under <code>exports/&lt;list&gt;/dt={date}/</code>)</p><table><thead><tr><th>center</th><th class="num">ambassador candidates</th><th class="num">churn alerts</th></tr></thead><tbody>"#,
        date = esc(&r.date)
    );
    for (center, (a, c)) in &per_center {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{a}</td><td class="num">{c}</td></tr>"#,
            esc(center)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn kpi_values_are_shown_on_their_scale() {
        assert_eq!(display_value("referred_nps", Some(75.0)), "75.0");
        assert_eq!(display_value("referral_rate", Some(0.3)), "0.300");
        assert_eq!(display_value("referral_rate", None), "–");
    }
}
