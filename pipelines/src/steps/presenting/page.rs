//! The pieces every HTML page and text summary of a run is made of: reading a table's cells as
//! text or numbers, escaping, and how KPIs, bands and counts are shown.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};

use crate::engine::Table;

pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A cell of a table as text (None when null or when the column is absent). Text is taken as
/// it is; other types are cast (a cast per cell: the lists' centers, counted for the report and
/// the summary, were a third of a second at the end of a 1M run when every cell was cast).
pub(crate) fn cell(b: &RecordBatch, col: &str, i: usize) -> Option<String> {
    let c = b.column_by_name(col)?;
    if c.is_null(i) {
        return None;
    }
    if let Some(text) = c.as_string_opt::<i32>() {
        return Some(text.value(i).to_string());
    }
    arrow::compute::cast(&c.slice(i, 1), &DataType::Utf8)
        .ok()
        .map(|a| a.as_string::<i32>().value(0).to_string())
}

pub(crate) fn float(b: &RecordBatch, col: &str, i: usize) -> Option<f64> {
    let c = b.column_by_name(col)?;
    if c.is_null(i) {
        return None;
    }
    let c = arrow::compute::cast(&c.slice(i, 1), &DataType::Float64).ok()?;
    Some(c.as_primitive::<Float64Type>().value(0))
}

/// Every (batch, row) of a table, in order; nothing for a missing table.
pub(crate) fn rows(t: Option<&Table>) -> impl Iterator<Item = (&RecordBatch, usize)> {
    t.into_iter()
        .flat_map(|t| t.batches.iter())
        .flat_map(|b| (0..b.num_rows()).map(move |i| (b, i)))
}

/// How a KPI value is shown: NPS on its own scale with one decimal, ratios with three.
pub fn display_value(kpi: &str, value: Option<f64>) -> String {
    match value {
        None => "–".into(),
        Some(v) if kpi.ends_with("nps") => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

pub(crate) fn label(id: &str) -> String {
    let s = id.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

pub(crate) fn band_badge(band: Option<&str>) -> String {
    match band {
        Some(b) => format!(r#"<span class="band b-{0}">{0}</span>"#, esc(b)),
        None => r#"<span class="band b-none">no band</span>"#.into(),
    }
}

pub(crate) fn count(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into())
}
