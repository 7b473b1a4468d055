use std::sync::Arc;

use arrow::array::{BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::*;

fn batch(x: &[Option<f64>], flag: &[bool], cat: &[&str]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, false),
        Field::new("cat", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Float64Array::from(x.to_vec())),
            Arc::new(BooleanArray::from(flag.to_vec())),
            Arc::new(StringArray::from(cat.to_vec())),
        ],
    )
    .unwrap()
}

fn spec() -> FeatureSpec {
    FeatureSpec {
        numeric: vec!["x".into()],
        missing_indicator: vec!["x".into()],
        boolean: vec!["flag".into()],
        categorical: vec!["cat".into()],
    }
}

fn settings() -> FitSettings {
    FitSettings {
        alpha: 1.0,
        max_iterations: 200,
        gradient_tolerance: 1e-6,
    }
}

/// A deterministic imbalanced set: ~5% positives, positive more likely for large x.
fn imbalanced(n: usize) -> (RecordBatch, Vec<bool>) {
    let mut state = 12345u64;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut xs = Vec::new();
    let mut flags = Vec::new();
    let mut cats = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let x = rnd() * 4.0 - 2.0;
        let flag = rnd() < 0.3;
        let p = sigmoid(-3.5 + 1.5 * x + if flag { 0.5 } else { 0.0 });
        xs.push(if rnd() < 0.05 { None } else { Some(x) });
        flags.push(flag);
        cats.push(if rnd() < 0.5 { "a" } else { "b" });
        y.push(rnd() < p);
    }
    (batch(&xs, &flags, &cats), y)
}

#[test]
fn p_is_the_probability_of_the_rare_positive_label() {
    let (b, y) = imbalanced(4000);
    let rate = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
    assert!(rate < 0.15, "the set must be imbalanced, got {rate}");
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let model = fit(pre, &x, &y, &settings()).unwrap();
    assert!(model.convergence.converged, "{:?}", model.convergence);
    assert!(
        model.coefficient("x").unwrap() > 0.5,
        "x pushes the positive label up: {:?}",
        model.coefficients
    );
    let p = model.predict(&x);
    let mean_p = p.iter().sum::<f64>() / p.len() as f64;
    assert!(
        (mean_p - rate).abs() < 0.02,
        "mean p {mean_p} should match the positive rate {rate}"
    );
    let m = evaluate(&p, &y);
    assert!(m.roc_auc > 0.75, "{}", m.roc_auc);
}

#[test]
fn non_convergence_is_reported() {
    let (b, y) = imbalanced(2000);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let model = fit(
        pre,
        &x,
        &y,
        &FitSettings {
            max_iterations: 1,
            ..settings()
        },
    )
    .unwrap();
    assert!(!model.convergence.converged, "{:?}", model.convergence);
}

#[test]
fn an_unseen_category_scores_like_no_category() {
    let (b, y) = imbalanced(1000);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let model = fit(pre, &x, &y, &settings()).unwrap();
    let new = batch(&[Some(1.0), None], &[true, false], &["zzz", "a"]);
    let scores = model.score(&new).unwrap();
    assert_eq!(scores.len(), 2);
    let xs = model.preprocessor.transform(&new).unwrap();
    let names = model.preprocessor.column_names();
    for (j, n) in names.iter().enumerate() {
        if n.starts_with("cat=") {
            assert_eq!(xs[[0, j]], 0.0, "an unseen level sets no one-hot column");
        }
        if n == "x__missing" {
            assert_eq!(xs[[1, j]], 1.0);
        }
    }
    assert!(scores.iter().all(|s| s.p > 0.0 && s.p < 1.0));
}

#[test]
fn one_class_and_empty_populations_are_errors_not_panics() {
    let b = batch(&[Some(1.0), Some(2.0)], &[true, false], &["a", "b"]);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    assert!(fit(pre.clone(), &x, &[true, true], &settings()).is_err());
    let empty = b.slice(0, 0);
    let x0 = pre.transform(&empty).unwrap();
    assert!(fit(pre, &x0, &[], &settings()).is_err());
}

#[test]
fn metrics_on_a_hand_checked_example() {
    // Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): pairs ranked right 3 of 4.
    let m = evaluate(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]);
    assert!((m.roc_auc - 0.75).abs() < 1e-12);
    // Average precision: (1/1 + 2/3) / 2.
    assert!((m.pr_auc - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    assert!((m.brier - (0.01 + 0.64 + 0.09 + 0.01) / 4.0).abs() < 1e-12);
    assert_eq!(m.base_rate, 0.5);
    // Ties: one positive and one negative with the same score count half.
    let t = evaluate(&[0.5, 0.5], &[true, false]);
    assert!((t.roc_auc - 0.5).abs() < 1e-12);
}

#[test]
fn lift_by_decile_on_a_hand_checked_example() {
    // 20 rows, scores 1.00, 0.95, ..., 0.05; positives at ranks 1, 2, 3 and 20. Base rate 4/20.
    let p: Vec<f64> = (0..20).map(|i| 1.0 - i as f64 * 0.05).collect();
    let y: Vec<bool> = (0..20).map(|i| i < 3 || i == 19).collect();
    let m = evaluate(&p, &y);
    let l = &m.lift_by_decile;
    assert_eq!(l.len(), 10);
    assert!(l.iter().all(|d| d.rows == 2));
    // Decile 1: 2 of 2 positive → rate 1.0 / 0.2 = 5.
    assert_eq!(l[0].positives, 2);
    assert!((l[0].lift.unwrap() - 5.0).abs() < 1e-12);
    // Decile 2: 1 of 2 → 2.5; cumulative 3 of 4 → 3.75.
    assert!((l[1].lift.unwrap() - 2.5).abs() < 1e-12);
    assert!((l[1].cumulative_lift.unwrap() - 3.75).abs() < 1e-12);
    assert_eq!(l[5].lift, Some(0.0));
    // Decile 10 holds the last positive; cumulative lift over everything is 1.
    assert!((l[9].lift.unwrap() - 2.5).abs() < 1e-12);
    assert!((l[9].cumulative_lift.unwrap() - 1.0).abs() < 1e-12);
    // No positives: lift is undefined, not 0 or NaN.
    let none = evaluate(&[0.3, 0.2], &[false, false]);
    assert!(none.lift_by_decile.iter().all(|d| d.lift.is_none()));
}

#[test]
fn a_model_whose_coefficients_do_not_fit_its_preprocessing_is_refused() {
    let (b, y) = imbalanced(400);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let model = fit(pre, &x, &y, &settings()).unwrap();
    assert!(model.check().is_ok());
    // A coefficient dropped (a model file edited by hand, or built for other features).
    let mut short = model.clone();
    short.coefficients.pop();
    let e = short.check().unwrap_err().to_string();
    assert!(e.contains("design columns"), "{e}");
    // Renamed coefficient.
    let mut renamed = model.clone();
    renamed.coefficients[0].0 = "y".into();
    assert!(renamed.check().is_err());
    // Non-finite numbers.
    let mut nan = model.clone();
    nan.intercept = f64::NAN;
    assert!(nan.check().is_err());
    let mut zero_std = model;
    zero_std.preprocessor.numeric[0].std = 0.0;
    assert!(zero_std
        .check()
        .unwrap_err()
        .to_string()
        .contains("unusable"));
}

#[test]
fn a_warm_started_large_fit_finds_the_cold_fit_optimum() {
    // 4 × WARM_START_ROWS rows: `fit` starts from a subsample's optimum.
    let n = 4 * WARM_START_ROWS;
    let (b, y) = imbalanced(n);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let s = FitSettings {
        alpha: 1.0,
        max_iterations: 300,
        gradient_tolerance: 1e-6 * n as f64,
    };
    let warm = fit(pre, &x, &y, &s).unwrap();
    assert!(warm.convergence.converged, "{:?}", warm.convergence);
    let (w, intercept) = linfa_fit(&x, &y, &s, None).unwrap();
    assert!(check_convergence(&x, &y, &w, intercept, &s).converged);
    // The one-hot levels and the intercept share a direction that only the L2 term pins, so
    // compare what matters: the probabilities.
    let cold = Model {
        coefficients: warm
            .coefficients
            .iter()
            .map(|(n, _)| n.clone())
            .zip(w)
            .collect(),
        intercept,
        ..warm.clone()
    };
    let (pw, pc) = (warm.predict(&x), cold.predict(&x));
    let worst = pw
        .iter()
        .zip(&pc)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "warm and cold probabilities differ by {worst}"
    );
    // Still P(true): the planted effect of x is positive although `true` is rare.
    assert!(warm.coefficient("x").unwrap() > 1.0);
}

/// A score's reasons are its features' positive contributions (a feature's one-hot levels and
/// missing indicator add up), largest first, three at most; the probability is the model's.
#[test]
fn a_scores_reasons_are_its_positive_contributions_by_feature_largest_first() {
    let (b, y) = imbalanced(1000);
    let pre = Preprocessor::fit(&spec(), std::slice::from_ref(&b)).unwrap();
    let x = pre.transform(&b).unwrap();
    let mut model = fit(pre, &x, &y, &settings()).unwrap();
    for (name, c) in model.coefficients.iter_mut() {
        *c = match name.as_str() {
            "x" => 0.0,
            "x__missing" => 3.0,
            "flag" => 2.0,
            "cat=a" => 1.0,
            _ => -1.0,
        };
    }
    let new = batch(
        &[None, Some(1.0), Some(0.5), None],
        &[true, false, true, false],
        &["a", "b", "a", "zzz"],
    );
    let scores = model.score(&new).unwrap();
    let tops: Vec<Vec<(&str, f64)>> = scores.iter().map(|s| s.top_features().to_vec()).collect();
    assert_eq!(
        tops,
        vec![
            vec![("x", 3.0), ("flag", 2.0), ("cat", 1.0)],
            vec![],
            vec![("flag", 2.0), ("cat", 1.0)],
            vec![("x", 3.0)],
        ]
    );
    let p = model.probabilities(&new).unwrap();
    assert_eq!(scores.iter().map(|s| s.p).collect::<Vec<_>>(), p);

    let many = [("a", 4.0), ("b", 3.0), ("c", 2.0), ("d", 1.0)];
    assert_eq!(Score::new(0.5, &many).top_features(), &many[..3]);
    assert_eq!(Score::new(0.5, &many[..1]).top_features(), &many[..1]);
}
