//! The report's view of time, from the run's `kpi_trends` table and the band edges of
//! `sql/int_kpi_bands.sql`:
//! - "Since the previous run": each network KPI's value then and now, its change and band move;
//!   how many customers entered and left each CRM list; and, per KPI, the service center whose
//!   value moved most (changes of different KPIs are in different units, so they are not ranked
//!   against each other).
//! - "Trends": one inline SVG sparkline per network KPI over the run dates of `kpi_trends` (this
//!   one and up to 11 earlier), with a dashed line at each band edge. Each point carries its date
//!   and exact value in `data-` attributes; a date with a null value gets a hollow marker on the
//!   axis, so every chart has exactly one point per date.
//!
//! Changes are shown as the table has them (`data-change` holds the exact double), so the page
//! and `kpi_trends` never disagree.

use std::collections::BTreeMap;
use std::fmt::Write;

use arrow::array::RecordBatch;
use chrono::Datelike;

use super::page::{band_badge, cell, display_value, esc, float, label, rows};
use crate::engine::Table;

const KPI_SOURCES: [(&str, &str); 2] = [
    ("referral_kpis", "Referral dashboard"),
    ("lifecycle_health", "Lifecycle health"),
];
const LISTS: [&str; 2] = ["ambassador_candidates", "churn_alerts"];
const BANDS: [&str; 4] = ["excellent", "good", "qualified", "pass"];

/// One row of `kpi_trends`.
struct Point {
    source: String,
    scope: String,
    kpi: String,
    date: String,
    value: Option<f64>,
    band: Option<String>,
    change: Option<f64>,
    previous_band: Option<String>,
}

fn point(b: &RecordBatch, i: usize) -> Point {
    Point {
        source: cell(b, "source", i).unwrap_or_default(),
        scope: cell(b, "scope", i).unwrap_or_default(),
        kpi: cell(b, "kpi", i).unwrap_or_default(),
        date: cell(b, "point_date", i).unwrap_or_default(),
        value: float(b, "value", i),
        band: cell(b, "band", i),
        change: float(b, "change", i),
        previous_band: cell(b, "previous_band", i),
    }
}

/// A KPI's dashboard position, kind and band edges in its value's unit (ratio edges are kept in
/// hundredths by the SQL).
struct Bands {
    pos: i64,
    edges: Vec<(&'static str, f64)>,
}

fn bands(t: Option<&Table>) -> BTreeMap<(String, String), Bands> {
    rows(t)
        .map(|(b, i)| {
            let unit = if cell(b, "kind", i).as_deref() == Some("nps") {
                1.0
            } else {
                100.0
            };
            let edges = BANDS
                .iter()
                .filter_map(|band| float(b, band, i).map(|e| (*band, e / unit)))
                .collect();
            let key = (
                cell(b, "source", i).unwrap_or_default(),
                cell(b, "kpi", i).unwrap_or_default(),
            );
            let pos = float(b, "pos", i).unwrap_or_default() as i64;
            (key, Bands { pos, edges })
        })
        .collect()
}

/// The network KPIs of `source` in dashboard order, each with its points oldest first.
fn network_series<'a>(
    points: &'a [Point],
    source: &str,
    bands: &BTreeMap<(String, String), Bands>,
) -> Vec<(&'a str, Vec<&'a Point>)> {
    let mut series: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
    for p in points
        .iter()
        .filter(|p| p.source == source && p.scope == "network")
    {
        series.entry(&p.kpi).or_default().push(p);
    }
    let mut out: Vec<(&str, Vec<&Point>)> = series.into_iter().collect();
    let pos = |kpi: &str| {
        bands
            .get(&(source.to_string(), kpi.to_string()))
            .map(|b| b.pos)
    };
    out.sort_by_key(|(kpi, _)| (pos(kpi), kpi.to_string()));
    for (_, ps) in &mut out {
        ps.sort_by(|a, b| a.date.cmp(&b.date));
    }
    out
}

/// What both sections draw from, read once from the run's tables: the rows of `kpi_trends`, the
/// band edges, and the point dates, oldest first.
pub struct Trends {
    points: Vec<Point>,
    bands: BTreeMap<(String, String), Bands>,
    dates: Vec<String>,
}

impl Trends {
    pub fn of(tables: &BTreeMap<String, Table>) -> Trends {
        let points: Vec<Point> = rows(tables.get("kpi_trends"))
            .map(|(b, i)| point(b, i))
            .collect();
        let mut dates: Vec<String> = points.iter().map(|p| p.date.clone()).collect();
        dates.sort();
        dates.dedup();
        Trends {
            bands: bands(tables.get(crate::engine::catalog::KPI_BANDS)),
            points,
            dates,
        }
    }
}

fn signed(kpi: &str, change: Option<f64>) -> String {
    match change {
        None => "–".into(),
        Some(c) if c > 0.0 => format!("+{}", display_value(kpi, Some(c))),
        Some(c) => display_value(kpi, Some(c)),
    }
}

fn band_move(p: &Point) -> String {
    let (before, now) = (p.previous_band.as_deref(), p.band.as_deref());
    if before == now {
        format!(
            r#"<span class="muted">unchanged</span> {}"#,
            band_badge(now)
        )
    } else {
        format!("{} → {}", band_badge(before), band_badge(now))
    }
}

/// "Since the previous run": KPI deltas with band moves, list entries and exits, and the largest
/// per-center move of each KPI.
pub fn since_previous_section(out: &mut String, t: &Trends) {
    let (points, bands) = (&t.points, &t.bands);
    out.push_str(r#"<section id="since-previous"><h2>Since the previous run</h2>"#);
    let (Some(now), Some(previous)) = (t.dates.last(), t.dates.iter().rev().nth(1)) else {
        out.push_str(r#"<p class="muted">No earlier run date in the output: nothing to compare yet.</p></section>"#);
        return;
    };
    let _ = write!(
        out,
        r#"<p class="muted">From the run of <b data-previous-date="{p}">{p}</b> to this one ({n}); values as published, changes exact in <code>kpi_trends</code>.</p>"#,
        p = esc(previous),
        n = esc(now),
    );
    kpi_deltas(out, points, bands, now);
    list_moves(out, points, now);
    center_moves(out, points, bands, now);
    out.push_str("</section>");
}

fn kpi_deltas(
    out: &mut String,
    points: &[Point],
    bands: &BTreeMap<(String, String), Bands>,
    now: &str,
) {
    out.push_str(r#"<h3>Network KPIs</h3><table><thead><tr><th>table</th><th>KPI</th><th class="num">before</th><th class="num">now</th><th class="num">change</th><th>band</th></tr></thead><tbody>"#);
    for (source, _) in KPI_SOURCES {
        for (kpi, series) in network_series(points, source, bands) {
            let Some(last) = series.last().filter(|p| p.date == now) else {
                continue;
            };
            let before = series.iter().rev().nth(1).and_then(|p| p.value);
            let _ = write!(
                out,
                r#"<tr data-delta-table="{source}" data-kpi="{k}" data-change="{raw}"><td>{source}</td><td>{name}</td><td class="num">{b}</td><td class="num">{n}</td><td class="num">{c}</td><td>{mv}</td></tr>"#,
                k = esc(kpi),
                raw = last.change.map(|c| c.to_string()).unwrap_or_default(),
                name = esc(&label(kpi)),
                b = display_value(kpi, before),
                n = display_value(kpi, last.value),
                c = signed(kpi, last.change),
                mv = band_move(last),
            );
        }
    }
    out.push_str("</tbody></table>");
}

fn list_moves(out: &mut String, points: &[Point], now: &str) {
    out.push_str(r#"<h3>CRM lists</h3><p class="muted">The cooldowns keep a listed customer off the list for some days, so on consecutive run dates most of a list is new.</p><table><thead><tr><th>list</th><th class="num">before</th><th class="num">now</th><th class="num">entered</th><th class="num">left</th></tr></thead><tbody>"#);
    for list in LISTS {
        let get = |kpi: &str, date_is_now: bool| {
            points
                .iter()
                .filter(|p| p.source == list && p.kpi == kpi)
                .filter(|p| (p.date == now) == date_is_now)
                .max_by(|a, b| a.date.cmp(&b.date))
                .and_then(|p| p.value)
        };
        let n = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into());
        let _ = write!(
            out,
            r#"<tr data-list-moves="{list}"><td>{list}</td><td class="num">{b}</td><td class="num" data-listed="{now_n}">{now_n}</td><td class="num" data-entered="{e}">{e}</td><td class="num" data-left="{l}">{l}</td></tr>"#,
            b = n(get("listed", false)),
            now_n = n(get("listed", true)),
            e = n(get("entered", true)),
            l = n(get("left", true)),
        );
    }
    out.push_str("</tbody></table>");
}

fn center_moves(
    out: &mut String,
    points: &[Point],
    bands: &BTreeMap<(String, String), Bands>,
    now: &str,
) {
    out.push_str(r#"<h3>Largest move per KPI among the service centers</h3><table><thead><tr><th>table</th><th>KPI</th><th>center</th><th class="num">now</th><th class="num">change</th><th>band</th></tr></thead><tbody>"#);
    let mut any = false;
    for (source, _) in KPI_SOURCES {
        let mut best: BTreeMap<&str, &Point> = BTreeMap::new();
        for p in points.iter().filter(|p| {
            p.source == source && p.scope != "network" && p.date == now && p.change.is_some()
        }) {
            let size = |p: &Point| p.change.map_or(0.0, f64::abs);
            match best.get(p.kpi.as_str()) {
                Some(b) if size(b) > size(p) || (size(b) == size(p) && b.scope <= p.scope) => {}
                _ => {
                    best.insert(&p.kpi, p);
                }
            }
        }
        let pos = |kpi: &str| {
            bands
                .get(&(source.to_string(), kpi.to_string()))
                .map(|b| b.pos)
        };
        let mut best: Vec<_> = best.into_iter().collect();
        best.sort_by_key(|(kpi, _)| (pos(kpi), kpi.to_string()));
        for (kpi, p) in best {
            any = true;
            let _ = write!(
                out,
                r#"<tr data-center-move="{source}:{k}" data-scope="{s}" data-change="{raw}"><td>{source}</td><td>{name}</td><td>{s}</td><td class="num">{n}</td><td class="num">{c}</td><td>{mv}</td></tr>"#,
                k = esc(kpi),
                s = esc(&p.scope),
                raw = p.change.map(|c| c.to_string()).unwrap_or_default(),
                name = esc(&label(kpi)),
                n = display_value(kpi, p.value),
                c = signed(kpi, p.change),
                mv = band_move(p),
            );
        }
    }
    if !any {
        out.push_str(
            r#"<tr><td colspan="6" class="muted">No center has a value on both dates.</td></tr>"#,
        );
    }
    out.push_str("</tbody></table>");
}

/// "Trends": a sparkline per network KPI with its band edges.
pub fn trends_section(out: &mut String, t: &Trends) {
    let (points, bands) = (&t.points, &t.bands);
    let dates: Vec<&str> = t.dates.iter().map(String::as_str).collect();
    let _ = write!(
        out,
        r#"<section id="trends"><h2>Trends</h2><p class="muted">Each network KPI over the last {n} run dates found in the output ({first} to {last}); dashed lines are the band edges, a hollow point on the axis a date without a value.</p>"#,
        n = dates.len(),
        first = esc(dates.first().copied().unwrap_or("–")),
        last = esc(dates.last().copied().unwrap_or("–")),
    );
    for (source, title) in KPI_SOURCES {
        let _ = write!(
            out,
            r#"<h3>{title}</h3><table><thead><tr><th>KPI</th><th>trend</th><th class="num">now</th><th>band</th></tr></thead><tbody>"#
        );
        for (kpi, series) in network_series(points, source, bands) {
            let edges = bands
                .get(&(source.to_string(), kpi.to_string()))
                .map(|b| b.edges.as_slice())
                .unwrap_or_default();
            let last = series.last();
            let _ = write!(
                out,
                r#"<tr><td>{name}</td><td>{svg}</td><td class="num">{v}</td><td>{badge}</td></tr>"#,
                name = esc(&label(kpi)),
                svg = sparkline(source, kpi, &series, &dates, edges),
                v = display_value(kpi, last.and_then(|p| p.value)),
                badge = band_badge(last.and_then(|p| p.band.as_deref())),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

/// The vertical range of a sparkline: its values and its band edges (a flat or empty series
/// gets a range around it).
fn value_range(series: &[&Point], edges: &[(&str, f64)]) -> (f64, f64) {
    let ys: Vec<f64> = series
        .iter()
        .filter_map(|p| p.value)
        .chain(edges.iter().map(|e| e.1))
        .collect();
    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    }
}

/// One KPI's values at `dates` (x: the date's place in time, so gaps between runs show), its
/// band edges as dashed lines.
fn sparkline(
    source: &str,
    kpi: &str,
    series: &[&Point],
    dates: &[&str],
    edges: &[(&str, f64)],
) -> String {
    let (w, h, left, right, top, bottom) = (260.0, 56.0, 4.0, 64.0, 6.0, 8.0);
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .map(|d| d.num_days_from_ce() as f64)
            .unwrap_or_default()
    };
    let (d0, d1) = match (dates.first(), dates.last()) {
        (Some(a), Some(b)) => (day(a), day(b)),
        _ => (0.0, 0.0),
    };
    let x = |d: &str| {
        let span = (d1 - d0).max(1.0);
        let at = if d1 > d0 { (day(d) - d0) / span } else { 0.5 };
        left + at * (w - left - right)
    };
    let (lo, hi) = value_range(series, edges);
    let y = |v: f64| top + (1.0 - (v - lo) / (hi - lo)) * (h - top - bottom);
    let mut s = format!(
        r##"<svg class="spark" data-spark="{source}:{kpi}" role="img" aria-label="{kpi} over {n} run dates" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"##,
        kpi = esc(kpi),
        n = dates.len(),
    );
    for (band, edge) in edges {
        let _ = write!(
            s,
            r##"<line class="edge" data-band="{band}" data-edge="{edge}" x1="{left}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#9aa1ad" stroke-dasharray="3 3"/><text x="{tx}" y="{ty:.1}">{band}</text>"##,
            x2 = w - right,
            yy = y(*edge),
            tx = w - right + 4.0,
            ty = y(*edge) + 4.0,
        );
    }
    // The line runs through consecutive points with values; a null breaks it.
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for p in series {
        match p.value {
            Some(v) => runs.last_mut().expect("one run at least").push(format!(
                "{:.1},{:.1}",
                x(&p.date),
                y(v)
            )),
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| r.len() > 1) {
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#2563eb" stroke-width="1.5"/>"##,
            run.join(" ")
        );
    }
    for p in series {
        let (cy, fill) = match p.value {
            Some(v) => (y(v), "#2563eb"),
            None => (h - bottom / 2.0, "none"),
        };
        let _ = write!(
            s,
            r##"<circle class="point" data-date="{d}" data-value="{raw}" cx="{cx:.1}" cy="{cy:.1}" r="2.5" fill="{fill}" stroke="#2563eb"><title>{d}: {shown}</title></circle>"##,
            d = esc(&p.date),
            raw = p.value.map(|v| v.to_string()).unwrap_or_default(),
            cx = x(&p.date),
            shown = display_value(kpi, p.value),
        );
    }
    s.push_str("</svg>");
    s
}
