//! The model file format (`models/<target>/<version>/model.json`), its content-addressed version,
//! the promotion rule and score deciles: everything about a model version that is pure data.
//! Where the files live is the pipeline's business, not this crate's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{FitSettings, Metrics, Model};

/// The format number written in every model file.
pub const FORMAT: u32 = 1;

/// What `models/<target>/<version>/model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: u32,
    pub target: String,
    pub version: String,
    pub model: Model,
    pub settings: FitSettings,
    pub horizon_days: i64,
    pub as_of: String,
    pub train_snapshot: String,
    pub holdout_snapshot: String,
    pub train_rows: u64,
    pub holdout_metrics: Metrics,
    pub input_fingerprint: String,
    pub libraries: BTreeMap<String, String>,
    /// The training snapshot's distribution of every feature and of the score, for the drift
    /// figures of the nightly runs (absent in files written before flywheel 0.1 had them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_reference: Vec<crate::drift::Reference>,
}

impl ModelFile {
    /// The content-addressed version `<as_of YYYYMMDD>-<fnv1a of the file with an empty version>`:
    /// the same inputs and settings give the same file and name.
    pub fn content_version(&self, as_of_yyyymmdd: &str) -> String {
        let mut blank = self.clone();
        blank.version = String::new();
        let body = serde_json::to_vec(&blank).expect("a model file serialises");
        format!("{as_of_yyyymmdd}-{:016x}", fnv1a(&body))
    }
}

/// FNV-1a, 64 bit: a stable hash for versions and fingerprints.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The promotion rule: holdout ROC AUC at least the champion's minus 0.005 and Brier score not
/// worse by more than 10%.
pub fn promotion_decision(
    challenger: &Metrics,
    champion: &Metrics,
    champion_version: &str,
) -> (bool, String) {
    let auc_ok = challenger.roc_auc >= champion.roc_auc - 0.005;
    let brier_ok = challenger.brier <= champion.brier * 1.10;
    let detail = format!(
        "challenger AUC {:.4} vs champion {champion_version} {:.4}; Brier {:.4} vs {:.4}",
        challenger.roc_auc, champion.roc_auc, challenger.brier, champion.brier
    );
    match (auc_ok, brier_ok) {
        (true, true) => (true, format!("promoted: {detail}")),
        (false, _) => (
            false,
            format!("kept as challenger: AUC more than 0.005 below the champion's ({detail})"),
        ),
        (true, false) => (
            false,
            format!("kept as challenger: Brier more than 10% worse ({detail})"),
        ),
    }
}

/// Decile 1 = the highest tenth of the scored customers (ties: customer_id), null when unscored.
pub fn deciles(p: &[Option<f64>], ids: &[String]) -> Vec<Option<i32>> {
    deciles_by(p, |i| ids[i].as_str())
}

/// [`deciles`] with the customer_id of row `i` given by `id(i)` (ids kept in any form).
///
/// The scored rows are sorted once by a packed key (the probability's total order, highest
/// first, and the row). When the ids ascend with the rows (customer_features is ordered by
/// customer_id), the row breaks ties exactly as the id does and no id is compared in the sort;
/// otherwise ties compare the ids.
pub fn deciles_by<'a>(p: &[Option<f64>], id: impl Fn(usize) -> &'a str) -> Vec<Option<i32>> {
    let mut keyed: Vec<(u64, usize)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|x| (descending_key(x), i)))
        .collect();
    if (1..p.len()).all(|i| id(i - 1) < id(i)) {
        keyed.sort_unstable();
    } else {
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| id(a.1).cmp(id(b.1))));
    }
    let n = keyed.len();
    let mut out = vec![None; p.len()];
    for (rank, (_, i)) in keyed.into_iter().enumerate() {
        out[i] = Some((rank * 10 / n.max(1)) as i32 + 1);
    }
    out
}

/// A key whose ascending order is the descending [`f64::total_cmp`] order of `x`.
fn descending_key(x: f64) -> u64 {
    let bits = x.to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    !ascending
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::evaluate;

    fn metrics(auc: f64, brier: f64) -> Metrics {
        let mut m = evaluate(&[0.9, 0.1], &[true, false]);
        m.roc_auc = auc;
        m.brier = brier;
        m
    }

    #[test]
    fn promotion_rule_better_equal_worse() {
        let champion = metrics(0.80, 0.100);
        assert!(
            promotion_decision(&metrics(0.82, 0.095), &champion, "c").0,
            "better"
        );
        assert!(
            promotion_decision(&metrics(0.80, 0.100), &champion, "c").0,
            "equal"
        );
        assert!(
            promotion_decision(&metrics(0.7951, 0.109), &champion, "c").0,
            "within tolerance"
        );
        let (ok, why) = promotion_decision(&metrics(0.7949, 0.100), &champion, "c");
        assert!(!ok && why.contains("AUC"), "{why}");
        let (ok, why) = promotion_decision(&metrics(0.81, 0.111), &champion, "c");
        assert!(!ok && why.contains("Brier"), "{why}");
    }

    #[test]
    fn deciles_rank_highest_first_with_ties_by_id() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let d = deciles(&[Some(0.1), Some(0.9), None, Some(0.9)], &ids);
        assert_eq!(d, vec![Some(7), Some(1), None, Some(4)]);
    }

    /// The ids in row order or not, the ranks are those of sorting by (p descending in
    /// `total_cmp` order, id ascending).
    #[test]
    fn deciles_are_the_same_whether_or_not_the_ids_ascend_with_the_rows() {
        let p = [
            Some(0.5),
            Some(-0.0),
            Some(0.0),
            None,
            Some(0.5),
            Some(1.0),
            Some(-1.0),
            Some(0.25),
            Some(0.5),
            Some(f64::MIN_POSITIVE),
            Some(0.0),
            Some(0.75),
        ];
        let expected = |ids: &[String]| -> Vec<Option<i32>> {
            let mut idx: Vec<usize> = (0..p.len()).filter(|i| p[*i].is_some()).collect();
            idx.sort_by(|a, b| {
                p[*b]
                    .unwrap()
                    .total_cmp(&p[*a].unwrap())
                    .then_with(|| ids[*a].cmp(&ids[*b]))
            });
            let mut out = vec![None; p.len()];
            for (rank, i) in idx.iter().enumerate() {
                out[*i] = Some((rank * 10 / idx.len()) as i32 + 1);
            }
            out
        };
        let ascending: Vec<String> = (0..p.len()).map(|i| format!("CU{i:02}")).collect();
        let shuffled: Vec<String> = (0..p.len())
            .map(|i| format!("CU{:02}", (i * 7) % 12))
            .collect();
        for ids in [ascending, shuffled] {
            assert_eq!(deciles(&p, &ids), expected(&ids), "{ids:?}");
        }
        let d = deciles(
            &p,
            &(0..p.len())
                .map(|i| format!("CU{i:02}"))
                .collect::<Vec<_>>(),
        );
        // 0.0 ranks above -0.0 (total order); the ties at 0.5 go by id: CU00, CU04, CU08.
        assert!(d[2] <= d[1] && d[0] <= d[4] && d[4] <= d[8]);
        assert_eq!(d[5], Some(1));
        assert_eq!(d[6], Some(10));
    }
}
