//! End-to-end tests of the `flywheel` binary: the nightly run on generated demo data, rerun
//! determinism, every bad-input path (clear message, documented exit code, nothing published),
//! pandas-style input types, and the same run against a real S3 server (SeaweedFS).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::tools;
use flywheel_pipelines::engine::encode::parquet_bytes;

const DATE: &str = "2026-06-01";

/// The flywheel binary, with the scratch area in this test process's own folder (a run the
/// tests kill on purpose leaves its scratch folder there, not in the machine's /tmp).
fn flywheel_command() -> Command {
    static SCRATCH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let scratch = SCRATCH.get_or_init(|| common::tempdir("scratch").keep());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flywheel"));
    cmd.env("FLYWHEEL_SCRATCH", scratch);
    cmd
}

fn flywheel(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = flywheel_command();
    cmd.args(args)
        .env_remove("FLYWHEEL_CONFIG")
        .env("FLYWHEEL_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run flywheel")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "flywheel failed ({:?}):\n{text}",
        out.status.code()
    );
    text
}

fn fails(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}; stderr:\n{stderr}"
    );
    stderr
}

/// Every file below `dir`, relative path → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// The files of an output without the run ledger (every run, a failed one too, adds a record).
fn published(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut f = files(dir);
    f.retain(|k, _| !k.starts_with("_runs/ledger/"));
    f
}

fn tables_only(mut f: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    f.retain(|k, _| !k.starts_with("_runs/") && !k.starts_with("models/"));
    f
}

/// Run a check script from tests/ with the tools venv's Python; it must succeed. Returns its output.
fn python_check(script: &str, args: &[&std::ffi::OsStr]) -> String {
    python_check_with(&tools::python(), script, args)
}

/// Run a check script from tests/ with `python`; it must succeed. Returns its output.
fn python_check_with(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg(common::repo().join("tests").join(script))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

fn generate(dir: &Path, customers: &str) {
    ok(&flywheel(
        &[
            "generate",
            "--customers",
            customers,
            "--seed",
            "7",
            "--as-of",
            DATE,
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    ));
}

/// `flywheel run` of DATE between two local folders (the champions must exist).
fn run(input: &Path, output: &Path) -> Output {
    run_at(DATE, input.to_str().unwrap(), output.to_str().unwrap(), &[])
}

/// `flywheel train --target all` as of DATE: the champions a nightly run needs.
fn train_all(input: &str, output: &str, env: &[(&str, String)]) {
    let text = ok(&flywheel(
        &[
            "train", "--target", "all", "--as-of", DATE, "--input", input, "--output", output,
        ],
        env,
    ));
    assert!(text.contains("refer:") && text.contains("churn:"), "{text}");
}

/// Train the champions, then `flywheel run` of DATE between two local folders.
fn train_and_run(input: &Path, output: &Path) -> Output {
    train_all(input.to_str().unwrap(), output.to_str().unwrap(), &[]);
    run(input, output)
}

/// `flywheel run --allow-missing-models` of DATE: the rules alone, scores null.
fn run_without_models(input: &Path, output: &Path) -> Output {
    flywheel(
        &[
            "run",
            "--date",
            DATE,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--allow-missing-models",
        ],
        &[],
    )
}

/// `flywheel run --date <date> --input <url> --output <url>` with extra environment.
fn run_at(date: &str, input: &str, output: &str, env: &[(&str, String)]) -> Output {
    flywheel(
        &["run", "--date", date, "--input", input, "--output", output],
        env,
    )
}

#[test]
fn nightly_run_publishes_every_table_and_reruns_byte_identically() {
    let dir = common::tempdir("e2e-run");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "3000");
    let text = ok(&train_and_run(&input, &out));
    assert!(text.contains("referral_attribution"), "{text}");

    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("_runs/dt={DATE}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let tables: Vec<&str> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    // Every published contract's table, each input's rejects, and nothing else.
    let mut want: Vec<String> = Vec::new();
    for c in flywheel_pipelines::contracts::published().unwrap() {
        let flywheel_pipelines::contracts::Role::Published(p) = &c.role else {
            unreachable!()
        };
        if p.folder.contains("{input}") {
            want.extend(
                flywheel_pipelines::contracts::inputs()
                    .iter()
                    .map(|i| format!("{}/{i}", c.table)),
            );
        } else {
            want.push(c.table.clone());
        }
    }
    let mut got: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    want.sort();
    got.sort();
    assert_eq!(
        got, want,
        "the manifest's tables are not the published contracts'"
    );
    for t in manifest["tables"].as_array().unwrap() {
        let dir = out.join(t["path"].as_str().unwrap());
        assert!(
            dir.is_dir() && !files(&dir).is_empty(),
            "{t}: nothing published"
        );
    }
    assert_eq!(
        manifest["model_versions"].as_object().unwrap().len(),
        2,
        "both champions scored: {}",
        manifest["model_versions"]
    );
    let visits = manifest["contract_checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"] == "visits")
        .unwrap();
    assert!(
        visits["rejected"].as_u64().unwrap() >= 2,
        "the demo plants bad visits: {visits}"
    );
    assert!(
        manifest["inputs"]["visits"].as_array().unwrap().len() >= 2,
        "visits come in year= folders"
    );
    assert!(manifest["stages"].as_array().unwrap().len() >= 4);
    assert!(out
        .join(format!("referral_attribution/dt={DATE}/part-00000.parquet"))
        .exists());
    assert!(!out.join("_staging").exists() || files(&out.join("_staging")).is_empty());

    // Rerun the date in place, and into a second output: identical table files.
    let first = tables_only(files(&out));
    ok(&run(&input, &out));
    assert_eq!(
        first,
        tables_only(files(&out)),
        "a rerun changed the output bytes"
    );
    // A second output scored by the same registry (the `models` setting): the same bytes.
    let out2 = dir.join("out2");
    ok(&run_at(
        DATE,
        input.to_str().unwrap(),
        out2.to_str().unwrap(),
        &[("FLYWHEEL_MODELS", out.join("models").display().to_string())],
    ));
    assert_eq!(first, tables_only(files(&out2)));
}

#[test]
fn the_same_seed_generates_identical_files() {
    let dir = common::tempdir("e2e-gen");
    generate(&dir.join("a"), "500");
    generate(&dir.join("b"), "500");
    let (a, b) = (files(&dir.join("a")), files(&dir.join("b")));
    assert!(a.len() >= 4);
    assert_eq!(a, b);
}

/// A good run first; then a broken input must fail with `code`, say `needles`, and leave the
/// published date exactly as it was.
fn assert_bad_input(name: &str, code: i32, needles: &[&str], breakage: impl Fn(&Path)) {
    let dir = common::tempdir(&format!("e2e-bad-{name}"));
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "300");
    ok(&run_without_models(&input, &out));
    let before = published(&out);
    breakage(&input);
    let stderr = fails(&run_without_models(&input, &out), code);
    for n in needles {
        assert!(stderr.contains(n), "{name}: message lacks {n:?}:\n{stderr}");
    }
    assert_eq!(
        before,
        published(&out),
        "{name}: a failed run changed the published outputs"
    );
    // Nothing published into a fresh output either.
    let fresh = dir.join("fresh");
    fails(&run_without_models(&input, &fresh), code);
    assert!(
        published(&fresh).is_empty(),
        "{name}: a failed run published {:?}",
        published(&fresh).keys()
    );
}

/// Cut a file to its first half (a Parquet file without its footer).
fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// Empty an input's folder (the folder stays).
fn empty_folder(folder: &Path) {
    std::fs::remove_dir_all(folder).unwrap();
    std::fs::create_dir_all(folder).unwrap();
}

fn visits_file(input: &Path) -> PathBuf {
    let year_dir = std::fs::read_dir(input.join("visits"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    year_dir.join("part-00000.parquet")
}

fn rewrite_parquet(path: &Path, f: impl Fn(RecordBatch) -> RecordBatch) {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| f(b.unwrap())).collect();
    let schema = batches[0].schema();
    std::fs::write(path, parquet_bytes(&schema, &batches).unwrap()).unwrap();
}

#[test]
fn a_missing_column_is_a_contract_error() {
    assert_bad_input(
        "missing-column",
        3,
        &["wait_minutes", "part-00000.parquet", "visits"],
        |input| {
            rewrite_parquet(&visits_file(input), |b| {
                let idx = b.schema().index_of("wait_minutes").unwrap();
                let mut b = b;
                b.remove_column(idx);
                b
            });
        },
    );
}

#[test]
fn a_wrong_type_is_a_contract_error() {
    assert_bad_input(
        "wrong-type",
        3,
        &["revenue", "Utf8", "decimal(12,2)"],
        |input| {
            rewrite_parquet(&visits_file(input), |b| {
                let idx = b.schema().index_of("revenue").unwrap();
                let as_text = arrow::compute::cast(b.column(idx), &DataType::Utf8).unwrap();
                let mut fields: Vec<Field> = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                fields[idx] = Field::new("revenue", DataType::Utf8, true);
                let mut cols = b.columns().to_vec();
                cols[idx] = as_text;
                RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
            });
        },
    );
}

#[test]
fn a_truncated_file_is_a_contract_error() {
    assert_bad_input(
        "truncated",
        3,
        &["not a readable Parquet file", "nps_responses"],
        |input| {
            truncate(&input.join("nps_responses/part-00000.parquet"));
        },
    );
}

/// Inputs are validated two at a time (the referral events alongside the CRM, before the NPS
/// answers), yet with two broken inputs the error is the first in the contracts' order, as if
/// they were read one after another: the NPS answers', not the referral events' that fail first.
#[test]
fn of_two_broken_inputs_the_first_in_contract_order_is_reported() {
    assert_bad_input(
        "two-broken",
        3,
        &["not a readable Parquet file", "nps_responses"],
        |input| {
            truncate(&input.join("nps_responses/part-00000.parquet"));
            empty_folder(&input.join("referral_events"));
        },
    );
}

#[test]
fn an_empty_input_directory_is_a_contract_error() {
    assert_bad_input(
        "empty",
        3,
        &["no *.parquet files", "referral_events"],
        |input| {
            empty_folder(&input.join("referral_events"));
        },
    );
}

#[test]
fn too_many_bad_rows_fail_the_run() {
    assert_bad_input(
        "rejects",
        3,
        &[
            "max_reject_share",
            "nps_responses",
            "score: above the maximum",
        ],
        |input| {
            rewrite_parquet(&input.join("nps_responses/part-00000.parquet"), |b| {
                let idx = b.schema().index_of("score").unwrap();
                let n = b.num_rows();
                let scores: arrow::array::Int32Array = (0..n)
                    .map(|i| Some(if i % 10 == 0 { 12 } else { 8 }))
                    .collect();
                let mut cols = b.columns().to_vec();
                cols[idx] = Arc::new(scores);
                RecordBatch::try_new(b.schema(), cols).unwrap()
            });
        },
    );
}

#[test]
fn an_unreachable_bucket_is_a_storage_error() {
    let dir = common::tempdir("e2e-unreachable");
    let env = [
        ("AWS_ACCESS_KEY_ID", "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "y".to_string()),
        ("AWS_ENDPOINT", "http://127.0.0.1:9".to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("FLYWHEEL_S3_MAX_RETRIES", "0".to_string()),
        ("FLYWHEEL_ALLOW_MISSING_MODELS", "true".to_string()),
    ];
    let out = run_at(
        DATE,
        "s3://no-such-bucket/in",
        dir.join("out").to_str().unwrap(),
        &env,
    );
    let stderr = fails(&out, 4);
    assert!(stderr.contains("s3://no-such-bucket/in"), "{stderr}");
    assert!(published(&dir.join("out")).is_empty());
}

/// The nightly run never trains: without a champion it stops (exit 5, naming the command to run,
/// nothing published); `--allow-missing-models` goes on with null scores and says so.
#[test]
fn a_run_without_champions_stops_unless_allowed() {
    let dir = common::tempdir("e2e-no-models");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "300");
    let stderr = fails(&run(&input, &out), 5);
    assert!(
        stderr.contains("flywheel train --target refer"),
        "the message names the command to run:\n{stderr}"
    );
    assert!(
        published(&out).is_empty(),
        "a stopped run published {:?}",
        published(&out).keys()
    );

    ok(&run_without_models(&input, &out));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("_runs/dt={DATE}/manifest.json"))).unwrap(),
    )
    .unwrap();
    assert!(manifest["model_versions"].as_object().unwrap().is_empty());
    let warnings = manifest["warnings"].to_string();
    for target in ["refer", "churn"] {
        assert!(
            warnings.contains(&format!("{target} scores are null: no champion model")),
            "{warnings}"
        );
    }
    let scores = tokio_rows(
        &out,
        &format!("scores/customer_scores/dt={DATE}"),
        &["p_refer", "p_churn"],
    );
    assert!(!scores.is_empty());
    assert!(
        scores.iter().all(|r| r == ","),
        "scores are not null: {:?}",
        &scores[..3]
    );

    // The ledger keeps every run, the failed one first, and a rerun adds a record.
    ok(&run_without_models(&input, &out));
    let env = [("FLYWHEEL_OUTPUT", out.display().to_string())];
    let text = ok(&flywheel(&["runs", "--date", DATE], &env));
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{text}");
    let cells: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    assert_eq!((cells[0][2], cells[0][3]), ("failed", "5"), "{text}");
    assert!(rows[0].contains("no champion model"), "{text}");
    for c in &cells[1..] {
        assert_eq!((c[2], c[3]), ("succeeded", "0"), "{text}");
    }
    let ledger = files(&out.join(format!("_runs/ledger/dt={DATE}")));
    assert_eq!(ledger.len(), 3);
    let record: serde_json::Value =
        serde_json::from_slice(ledger.values().last().unwrap()).unwrap();
    assert_eq!(record["schema_version"], 1);
    assert_eq!(
        record["input_fingerprints"].as_object().unwrap().len(),
        4,
        "{record}"
    );
}

/// One run of a date at a time: a live lock of the date stops a second run at once (exit 7,
/// naming the holder, nothing published, the lock left to its holder); `--break-lock` and a
/// stale lock are taken over; runs of two different dates go on side by side.
#[test]
fn a_date_is_run_by_one_run_at_a_time() {
    let dir = common::tempdir("e2e-lock");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "300");
    let lock = out.join(format!("_locks/dt={DATE}.json"));
    let holder = |started: chrono::DateTime<chrono::Utc>| {
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        let body = serde_json::json!({
            "run_id": "2026-06-01-holder", "host": "elsewhere", "pid": 4242,
            "started_at": started.to_rfc3339(),
        });
        std::fs::write(&lock, body.to_string()).unwrap();
    };
    holder(chrono::Utc::now());
    let started = std::time::Instant::now();
    let stderr = fails(&run_without_models(&input, &out), 7);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        stderr.contains("2026-06-01-holder")
            && stderr.contains("elsewhere")
            && stderr.contains("--break-lock"),
        "{stderr}"
    );
    assert!(lock.exists(), "a refused run removed the holder's lock");
    assert!(
        !out.join(format!("_runs/dt={DATE}")).exists(),
        "a refused run published"
    );

    // --break-lock takes it over; the run releases it at the end.
    let mut args = vec![
        "run",
        "--date",
        DATE,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--allow-missing-models",
        "--break-lock",
    ];
    ok(&flywheel(&args, &[]));
    assert!(!lock.exists(), "the run did not release its lock");
    let first = tables_only(files(&out));

    // A stale lock (its holder died two days ago) is taken over without the flag.
    holder(chrono::Utc::now() - chrono::Duration::days(2));
    args.pop();
    ok(&flywheel(&args, &[]));
    assert!(!lock.exists());
    assert_eq!(first, tables_only(files(&out)));

    // Two dates at once (far enough apart that neither reads the other's lists): both complete.
    let spawn = |date: &str| {
        flywheel_command()
            .args([
                "run",
                "--date",
                date,
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--allow-missing-models",
            ])
            .env("FLYWHEEL_LOG", "warn")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("2026-06-02").unwrap());
        let b = s.spawn(|| spawn("2026-08-01").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    ok(&a);
    ok(&b);
}

/// `--log-format json`: one JSON object per line, the message at the top level and the run's id
/// on every line of the run, a failed run's line included.
#[test]
fn json_logs_carry_the_message_and_the_run_id() {
    let dir = common::tempdir("e2e-json-logs");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "300");
    let check = |stderr: &str, want_error: bool, min_lines: usize| {
        let mut lines = 0;
        let mut run_ids = std::collections::BTreeSet::new();
        for line in stderr.lines().filter(|l| l.starts_with('{')) {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(v["message"].is_string(), "no top-level message: {line}");
            assert!(v.get("fields").is_none(), "nested fields: {line}");
            // The command line's closing line (the exit code for the scheduler) is outside the run.
            if v.get("span").is_none() && v["exit_code"].is_number() {
                continue;
            }
            let id = v["span"]["run_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no run_id: {line}"));
            run_ids.insert(id.to_string());
            lines += 1;
        }
        assert!(lines >= min_lines, "{stderr}");
        assert_eq!(run_ids.len(), 1, "{run_ids:?}");
        assert_eq!(stderr.contains("run failed"), want_error, "{stderr}");
    };
    let args = [
        "--log-format",
        "json",
        "run",
        "--date",
        DATE,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let info = [("FLYWHEEL_LOG", "info".to_string())];
    let failed = flywheel(&args, &info);
    assert_eq!(failed.status.code(), Some(5));
    check(&String::from_utf8_lossy(&failed.stderr), true, 1);
    let mut allowed = args.to_vec();
    allowed.push("--allow-missing-models");
    let good = flywheel(&allowed, &info);
    assert!(good.status.success());
    check(&String::from_utf8_lossy(&good.stderr), false, 3);
}

/// A panic is a bug: one line on stderr and exit 70, never Rust's 101.
#[test]
fn a_panic_is_an_internal_error_with_exit_70() {
    let stderr = fails(
        &flywheel(&["validate"], &[("FLYWHEEL_TEST_PANIC", "1".into())]),
        70,
    );
    assert!(stderr.contains("internal error"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Run dates whose windows and horizons overflow nanosecond timestamps are refused (exit 2)
/// with the range that works, instead of silently wrong tables.
#[test]
fn a_run_date_outside_the_timestamp_range_exits_2() {
    let dir = common::tempdir("e2e-far-date");
    for date in ["9999-12-31", "2263-01-01", "1600-01-01"] {
        let stderr = fails(
            &flywheel(
                &[
                    "run",
                    "--date",
                    date,
                    "--input",
                    dir.join("in").to_str().unwrap(),
                    "--output",
                    dir.join("out").to_str().unwrap(),
                    "--allow-missing-models",
                ],
                &[],
            ),
            2,
        );
        assert!(
            stderr.contains(date) && stderr.contains("use a date from"),
            "{stderr}"
        );
    }
    assert!(!dir.join("out").exists() || files(&dir.join("out")).is_empty());
}

#[test]
fn usage_and_config_errors_exit_2() {
    let dir = common::tempdir("e2e-config");
    fails(&flywheel(&["run", "--date", "2026-13-01"], &[]), 2);
    let cfg = dir.join("flywheel.toml");
    std::fs::write(&cfg, "attribution_window_days = \"ninety\"\n").unwrap();
    let stderr = fails(
        &flywheel(&["--config", cfg.to_str().unwrap(), "validate"], &[]),
        2,
    );
    assert!(stderr.contains("flywheel.toml"), "{stderr}");
    fails(
        &flywheel(&["run"], &[("FLYWHEEL_MAX_REJECT_SHARE", "lots".into())]),
        2,
    );
}

#[test]
fn validate_checks_without_publishing() {
    let dir = common::tempdir("e2e-validate");
    generate(&dir.join("in"), "300");
    let text = ok(&flywheel(
        &[
            "validate",
            "--input",
            dir.join("in").to_str().unwrap(),
            "--date",
            DATE,
        ],
        &[],
    ));
    assert!(text.contains("meet their contracts"), "{text}");
    assert!(text.contains("visits"));
}

/// Exporters write int64 for int32 columns, float money, naive nanosecond timestamps, large and
/// dictionary strings: the results must be the same as with the canonical types.
#[test]
fn pandas_style_types_give_the_same_outputs() {
    let dir = common::tempdir("e2e-pandas");
    let case = common::repo().join("tests/golden/attribution/inputs");
    let canonical = dir.join("canonical");
    common::csv_inputs_to_parquet(&case, &canonical);
    // Add visits and answers so every conversion path is exercised.
    let features = common::repo().join("tests/golden/features/inputs");
    let mixed = dir.join("mixed");
    common::csv_inputs_to_parquet(&features, &mixed);
    for table in ["visits", "nps_responses"] {
        std::fs::copy(
            mixed.join(table).join("part-0.parquet"),
            canonical.join(table).join("part-0.parquet"),
        )
        .unwrap();
    }
    let crm_f = mixed.join("crm_customers/part-0.parquet");
    std::fs::copy(&crm_f, canonical.join("crm_customers/part-1.parquet")).unwrap();

    let pandas = dir.join("pandas");
    for entry in files(&canonical).keys() {
        let src = canonical.join(entry);
        let dst = pandas.join(entry);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
        rewrite_parquet(&dst, pandas_types);
    }
    // The attribution case quarantines 4 of 73 events on purpose.
    // Too little history to train: the rules alone, scores null.
    let lenient = [
        ("FLYWHEEL_MAX_REJECT_SHARE", "0.1".to_string()),
        ("FLYWHEEL_ALLOW_MISSING_MODELS", "true".to_string()),
    ];
    let run_lenient = |input: &Path, output: &Path| {
        run_at(
            DATE,
            input.to_str().unwrap(),
            output.to_str().unwrap(),
            &lenient,
        )
    };
    ok(&run_lenient(&canonical, &dir.join("out-canonical")));
    ok(&run_lenient(&pandas, &dir.join("out-pandas")));
    let a = tables_only(files(&dir.join("out-canonical")));
    let b = tables_only(files(&dir.join("out-pandas")));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        if k.starts_with("scores/") || k.starts_with("reports/") {
            // Model versions hash the input files' sizes (the report names them); the scores are
            // compared below.
            continue;
        }
        assert!(
            v == &b[k],
            "{k} differs between canonical and pandas-style inputs"
        );
    }
    let folder = format!("scores/customer_scores/dt={DATE}");
    let cols = [
        "customer_id",
        "p_refer",
        "p_churn",
        "p_refer_reasons",
        "p_churn_reasons",
    ];
    let sa = tokio_rows(&dir.join("out-canonical"), &folder, &cols);
    let sb = tokio_rows(&dir.join("out-pandas"), &folder, &cols);
    assert!(!sa.is_empty());
    assert_eq!(sa, sb);
}

fn pandas_types(b: RecordBatch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        let to = match f.data_type() {
            DataType::Int32 => DataType::Int64,
            DataType::Decimal128(..) => DataType::Float64,
            DataType::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Nanosecond, None),
            DataType::Utf8 if f.name().ends_with("_id") => DataType::LargeUtf8,
            DataType::Utf8 => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            other => other.clone(),
        };
        let col = if let DataType::Timestamp(..) = f.data_type() {
            // Naive timestamps: the UTC wall clock without a zone.
            let raw = c
                .as_any()
                .downcast_ref::<arrow::array::TimestampNanosecondArray>()
                .unwrap()
                .clone();
            Arc::new(raw.with_timezone_opt(None::<String>)) as ArrayRef
        } else {
            arrow::compute::cast(c, &to).unwrap()
        };
        fields.push(Field::new(f.name(), to, true));
        cols.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

/// The same run against a real S3 server gives the same outputs as on the local filesystem.
#[test]
fn s3_run_matches_local_run() {
    let dir = common::tempdir("e2e-s3");
    let server = tools::Seaweed::start(dir.join("weed"));
    server.create_bucket("flywheel");
    let env = server.env();
    let local_in = dir.join("in");
    generate(&local_in, "800");
    ok(&flywheel(
        &[
            "generate",
            "--customers",
            "800",
            "--seed",
            "7",
            "--as-of",
            DATE,
            "--out",
            "s3://flywheel/in",
        ],
        &env,
    ));
    ok(&train_and_run(&local_in, &dir.join("out")));
    train_all("s3://flywheel/in", "s3://flywheel/out", &env);
    // At debug level, so that a secret in any log line would show; with the scratch area on
    // S3 too (the inputs and intermediate tables registered from there by location), which the
    // run removes when it ends. The tables are compared with the local run's below.
    let mut debug_env = env.clone();
    debug_env.push(("FLYWHEEL_LOG", "debug".to_string()));
    debug_env.push(("FLYWHEEL_SCRATCH", "s3://flywheel/scratch".to_string()));
    let log = ok(&run_at(
        DATE,
        "s3://flywheel/in",
        "s3://flywheel/out",
        &debug_env,
    ));
    assert!(
        log.contains("scratch=s3://flywheel/scratch/"),
        "the run did not use the S3 scratch area"
    );
    assert!(
        Bucket::new(&server, "flywheel").files("scratch").is_empty(),
        "the run left its scratch folder on S3"
    );
    assert!(
        !log.contains(tools::SECRET_KEY),
        "the secret key is in the log"
    );
    // At trace level (every crate's lines), with a session token, in text and JSON logs:
    // whatever the server makes of the token, neither secret shows.
    const TOKEN: &str = "flywheel-session-token-5ecret";
    for format in ["text", "json"] {
        let mut trace_env = env.clone();
        trace_env.push(("FLYWHEEL_LOG", "trace".to_string()));
        trace_env.push(("AWS_SESSION_TOKEN", TOKEN.to_string()));
        trace_env.push(("FLYWHEEL_LOG_FORMAT", format.to_string()));
        let out = run_at(DATE, "s3://flywheel/in", "s3://flywheel/token", &trace_env);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(log.lines().count() > 20, "{format}: too few trace lines");
        assert!(
            !log.contains(tools::SECRET_KEY),
            "{format}: the secret key is in the log"
        );
        assert!(
            !log.contains(TOKEN),
            "{format}: the session token is in the log"
        );
    }

    // Read the S3 outputs back through object_store.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("flywheel")
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(tools::ACCESS_KEY)
        .with_secret_access_key(tools::SECRET_KEY)
        .build()
        .unwrap();
    let remote: BTreeMap<String, Vec<u8>> = rt.block_on(async {
        use futures::TryStreamExt;
        use object_store::{ObjectStore, ObjectStoreExt};
        let prefix = object_store::path::Path::from("out");
        let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
        let mut out = BTreeMap::new();
        for m in metas {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            let rel = m.location.as_ref().trim_start_matches("out/").to_string();
            out.insert(rel, bytes.to_vec());
        }
        out
    });
    // Nor in anything written to the bucket (manifest, ledger, tables).
    for (k, v) in &remote {
        assert!(
            !String::from_utf8_lossy(v).contains(tools::SECRET_KEY),
            "the secret key is in {k}"
        );
    }
    for (k, v) in &Bucket::new(&server, "flywheel").files("token") {
        let text = String::from_utf8_lossy(v);
        assert!(
            !text.contains(tools::SECRET_KEY) && !text.contains(TOKEN),
            "a secret is in token/{k}"
        );
    }
    let local = tables_only(files(&dir.join("out")));
    let mut remote_tables = tables_only(remote.clone());
    // Rejects name the source file relative to the input root: the same on both.
    assert_eq!(
        local.keys().collect::<Vec<_>>(),
        remote_tables.keys().collect::<Vec<_>>()
    );
    for (k, v) in &local {
        assert!(
            remote_tables.remove(k).as_ref() == Some(v),
            "{k} differs between S3 and local"
        );
    }
    assert!(
        remote.keys().any(|k| k.starts_with("_runs/dt=")),
        "no manifest on S3"
    );

    // The date's lock works on S3 too (conditional create): a live holder refuses a second run
    // (exit 7, the lock left in place), --break-lock takes it over.
    rt.block_on(async {
        use object_store::ObjectStoreExt;
        let holder = serde_json::json!({
            "run_id": "s3-holder", "host": "elsewhere", "pid": 1,
            "started_at": chrono::Utc::now().to_rfc3339(),
        });
        store
            .put(
                &object_store::path::Path::from(format!("out/_locks/dt={DATE}.json")),
                holder.to_string().into_bytes().into(),
            )
            .await
            .unwrap();
    });
    let stderr = fails(
        &run_at(DATE, "s3://flywheel/in", "s3://flywheel/out", &env),
        7,
    );
    assert!(stderr.contains("s3-holder"), "{stderr}");
    ok(&flywheel(
        &[
            "run",
            "--date",
            DATE,
            "--input",
            "s3://flywheel/in",
            "--output",
            "s3://flywheel/out",
            "--break-lock",
        ],
        &env,
    ));
}

/// Training twice on the same inputs gives the same model file; promote and rollback move the
/// champion; a corrupt model file is a clear model error (exit 5).
#[test]
fn training_is_reproducible_and_the_registry_promotes_and_rolls_back() {
    let dir = common::tempdir("e2e-train");
    let input = dir.join("in");
    generate(&input, "4000");
    let train_with = |out: &Path, as_of: &str, env: &[(&str, String)]| {
        ok(&flywheel(
            &[
                "train",
                "--target",
                "refer",
                "--as-of",
                as_of,
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
            env,
        ))
    };
    let train = |out: &Path, as_of: &str| train_with(out, as_of, &[]);
    let (a, b) = (dir.join("a"), dir.join("b"));
    train(&a, DATE);
    train(&b, DATE);
    let (fa, fb) = (files(&a.join("models")), files(&b.join("models")));
    assert!(
        fa.keys().any(|k| k.ends_with("model.json")),
        "{:?}",
        fa.keys()
    );
    assert_eq!(
        fa, fb,
        "retraining on the same inputs changed the model file"
    );
    // Each version has its model card, written from the model file.
    let (model_key, model) = fa.iter().find(|(k, _)| k.ends_with("model.json")).unwrap();
    let card = &fa[&model_key.replace("model.json", "card.md")];
    let card = String::from_utf8_lossy(card);
    let model: serde_json::Value = serde_json::from_slice(model).unwrap();
    let auc = model["holdout_metrics"]["roc_auc"].as_f64().unwrap();
    assert!(card.contains(&format!("ROC AUC {auc:.4}")), "{card}");
    assert!(card.contains(&format!(
        "snapshot {}",
        model["holdout_snapshot"].as_str().unwrap()
    )));
    let coefficient_lines = card
        .lines()
        .filter(|l| l.starts_with("- ") && l.contains("(coefficient "))
        .count();
    assert_eq!(coefficient_lines, 10, "{card}");
    assert_eq!(
        card.matches("\n| 0.").count(),
        10,
        "ten calibration bins: {card}"
    );
    for section in [
        "## What it predicts",
        "## Features it cannot be used without",
        "## Known limits",
    ] {
        assert!(card.contains(section), "{section}: {card}");
    }

    // A snapshot larger than `train_sample_rows` is fitted on a deterministic sample of that
    // many rows (the same model file twice), evaluated on the whole holdout, and the card says so.
    let sampled = |out: &Path| {
        train_with(
            out,
            DATE,
            &[("FLYWHEEL_TRAIN_SAMPLE_ROWS", "1000".to_string())],
        )
    };
    let (c, d) = (dir.join("c"), dir.join("d"));
    sampled(&c);
    sampled(&d);
    let (fc, fd) = (files(&c.join("models")), files(&d.join("models")));
    assert_eq!(fc, fd, "retraining on a sample changed the model file");
    let (sampled_key, sampled_model) = fc.iter().find(|(k, _)| k.ends_with("model.json")).unwrap();
    let sampled_model: serde_json::Value = serde_json::from_slice(sampled_model).unwrap();
    let holdout_rows = model["holdout_metrics"]["rows"].as_u64().unwrap();
    assert!(
        holdout_rows > 1000,
        "the test needs a larger snapshot: {holdout_rows}"
    );
    assert_eq!(sampled_model["train_rows"].as_u64(), Some(1000));
    assert_eq!(model["train_rows"].as_u64(), Some(holdout_rows));
    assert_eq!(
        sampled_model["holdout_metrics"]["rows"].as_u64(),
        Some(holdout_rows),
        "the holdout is evaluated whole"
    );
    let coefficients = |m: &serde_json::Value| m["model"]["coefficients"].clone();
    assert!(coefficients(&model).is_array(), "{model}");
    assert_ne!(coefficients(&sampled_model), coefficients(&model));
    let sampled_card = String::from_utf8_lossy(&fc[&sampled_key.replace("model.json", "card.md")]);
    assert!(
        sampled_card.contains(&format!(
            "1000 rows, a deterministic sample of its {holdout_rows} (`train_sample_rows`)"
        )),
        "{sampled_card}"
    );
    assert!(!card.contains("deterministic sample"), "{card}");

    // A second version, then promote / rollback.
    let text = train(&a, "2026-05-01");
    assert!(text.contains("refer:"), "{text}");
    let env = [("FLYWHEEL_OUTPUT", a.display().to_string())];
    let list = ok(&flywheel(&["models", "list"], &env));
    let versions: Vec<String> = list
        .lines()
        .filter(|l| l.contains("refer"))
        .map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("2026"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(versions.len(), 2, "{list}");
    let champion = |env: &[(&str, String)]| -> String {
        // stdout is the model's JSON (the drift figures go to stderr).
        let out = flywheel(&["models", "show", "refer"], env);
        ok(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["version"].as_str().unwrap().to_string()
    };
    let current = champion(&env);
    let other = versions.iter().find(|v| **v != current).unwrap().clone();
    ok(&flywheel(&["models", "promote", "refer", &other], &env));
    assert_eq!(champion(&env), other);
    ok(&flywheel(&["models", "rollback", "refer"], &env));
    assert_eq!(champion(&env), current);

    // A corrupt model file: a clear error, exit 5.
    let path = a.join("models/refer").join(&current).join("model.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let stderr = fails(&flywheel(&["models", "show", "refer"], &env), 5);
    assert!(stderr.contains("not a valid model file"), "{stderr}");
}

/// DuckDB (an independent engine, from PyPI) reads every published table with hive
/// partitioning and finds the documented columns and types.
#[test]
fn analysts_read_the_documented_schema_with_duckdb() {
    use flywheel_pipelines::contracts::{self, ColType};
    let dir = common::tempdir("e2e-duckdb");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "1500");
    ok(&train_and_run(&input, &out));
    let duck = |t: ColType| match t {
        ColType::String => "VARCHAR".to_string(),
        ColType::Int32 => "INTEGER".into(),
        ColType::Int64 => "BIGINT".into(),
        ColType::Float64 => "DOUBLE".into(),
        ColType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
        ColType::Timestamp => "TIMESTAMP WITH TIME ZONE".into(), // microseconds, UTC
        ColType::Date => "DATE".into(),
        ColType::Boolean => "BOOLEAN".into(),
    };
    let mut expected = serde_json::Map::new();
    let tables = [
        ("referral_attribution", "referral_attribution"),
        ("customer_features", "customer_features"),
        ("scores/customer_scores", "customer_scores"),
        ("referral_kpis", "referral_kpis"),
        ("lifecycle_health", "lifecycle_health"),
        ("lifecycle_diagnosis", "lifecycle_diagnosis"),
        ("channel_funnel", "channel_funnel"),
        ("referrer_rewards", "referrer_rewards"),
        ("referred_vs_other", "referred_vs_other"),
        ("rejects/visits", "rejects"),
    ];
    for (folder, contract) in tables {
        let c = contracts::contract(contract).unwrap();
        let cols: Vec<serde_json::Value> = c
            .columns
            .iter()
            .map(|col| serde_json::json!([col.name, duck(col.ty)]))
            .collect();
        expected.insert(folder.to_string(), serde_json::Value::Array(cols));
    }
    let spec = dir.join("expected.json");
    std::fs::write(&spec, serde_json::to_vec(&expected).unwrap()).unwrap();
    let text = python_check("analyst_check.py", &[out.as_os_str(), spec.as_os_str()]);
    assert!(text.contains("all tables match their contracts"), "{text}");
}

/// Analysts read every published table by folder with partition discovery in five common tools
/// (pandas, pyarrow, polars, DuckDB, Spark, all from PyPI) and count the manifest's rows: no
/// `dt` inside the files to clash with the folder, microsecond timestamps, no CSV among the
/// Parquet files.
#[test]
fn every_reader_reads_every_published_table() {
    let dir = common::tempdir("e2e-readers");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "1500");
    ok(&train_and_run(&input, &out));
    let manifest = out.join(format!("_runs/dt={DATE}/manifest.json"));
    let text = python_check("readers_check.py", &[out.as_os_str(), manifest.as_os_str()]);
    assert!(text.contains("every reader reads every table"), "{text}");
    assert!(text.contains(" 0 failures"), "{text}");
}

/// Other tools run the contracts as they are: datacontract-cli (its own venv) tests every
/// contract on a real run's inputs and outputs through the contracts' server globs
/// (`./data/<input>/**/*.parquet`, `./out/<table>/dt=*/*.parquet`), agrees with flywheel's
/// rejects on the inputs, fails a broken row rule (`type: sql`), and exports DDL that DuckDB
/// accepts (see tests/datacontract_check.py for the one known exception).
#[test]
fn datacontract_cli_runs_the_contracts() {
    let dir = common::tempdir("e2e-datacontract");
    let (input, out) = (dir.join("data"), dir.join("out"));
    generate(&input, "1500");
    ok(&train_and_run(&input, &out));
    let python = tools::datacontract_venv().join("bin/python");
    let contracts_dir = common::repo().join("data-contracts");
    let text = python_check_with(
        &python,
        "datacontract_check.py",
        &[contracts_dir.as_os_str(), dir.as_os_str()],
    );
    let contracts = std::fs::read_dir(common::repo().join("data-contracts"))
        .unwrap()
        .count();
    assert!(
        text.contains(&format!(
            "{contracts} contracts run by datacontract-cli: ok"
        )),
        "{text}"
    );
}

/// The platform hooks: `--metrics-file` parses with prometheus_client's parser and agrees with the
/// manifest; `--lineage-file` holds START then COMPLETE (or FAIL) events that the official
/// OpenLineage client's schema-generated model accepts unchanged; on a failed run, FAIL with the
/// error and `flywheel_run_success 0`. Completions and value lists in `--help`.
#[test]
fn platform_hooks_metrics_lineage_and_completions() {
    let dir = common::tempdir("e2e-hooks");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "600");
    train_all(input.to_str().unwrap(), out.to_str().unwrap(), &[]);
    let (metrics, lineage) = (
        dir.join("hooks/flywheel.prom"),
        dir.join("hooks/lineage.jsonl"),
    );
    let hooks = |metrics: &Path, lineage: &Path| {
        vec![
            "--metrics-file".to_string(),
            metrics.display().to_string(),
            "--lineage-file".to_string(),
            lineage.display().to_string(),
        ]
    };
    let mut args: Vec<String> = [
        "run",
        "--date",
        DATE,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(hooks(&metrics, &lineage));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&flywheel(&argv, &[]));
    let manifest = out.join(format!("_runs/dt={DATE}/manifest.json"));
    let text = python_check(
        "hooks_check.py",
        &[
            metrics.as_os_str(),
            lineage.as_os_str(),
            manifest.as_os_str(),
        ],
    );
    assert!(text.contains("hooks ok"), "{text}");

    // A failed run (an input folder gone): exit 3, FAIL event, run_success 0.
    std::fs::remove_dir_all(input.join("visits")).unwrap();
    let (metrics, lineage) = (
        dir.join("hooks/failed.prom"),
        dir.join("hooks/failed.jsonl"),
    );
    let mut args: Vec<String> = args[..7].to_vec();
    args.extend(hooks(&metrics, &lineage));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&flywheel(&argv, &[]), 3);
    let text = python_check(
        "hooks_check.py",
        &[
            metrics.as_os_str(),
            lineage.as_os_str(),
            std::ffi::OsStr::new("-"),
        ],
    );
    assert!(text.contains("hooks ok"), "{text}");

    // Shell completions name the commands and the target values; --help lists the values.
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&flywheel(&["completions", shell], &[]));
        assert!(
            script.contains("recover") && script.contains("churn"),
            "{shell}: {script}"
        );
    }
    let help = ok(&flywheel(&["train", "--help"], &[]));
    assert!(
        help.contains("[possible values: refer, churn, all]"),
        "{help}"
    );
}

/// `flywheel run --from D1 --to D2`: every date in order, a progress line each; each date's
/// tables equal those of single-date runs (checked for three dates, byte for byte); a second
/// backfill skips every date (same inputs), `--force` reruns them; a failing date stops the
/// backfill with its exit code.
#[test]
fn a_backfill_equals_single_date_runs_and_skips_what_is_done() {
    let dir = common::tempdir("e2e-backfill");
    let input = dir.join("in");
    generate(&input, "1500");
    let models = dir.join("models-only");
    train_all(input.to_str().unwrap(), models.to_str().unwrap(), &[]);
    let dates = [
        "2026-06-01",
        "2026-06-02",
        "2026-06-03",
        "2026-06-04",
        "2026-06-05",
    ];
    let backfill = |out: &Path, extra: &[&str], env: &[(&str, String)]| {
        let mut args = vec![
            "run",
            "--from",
            dates[0],
            "--to",
            dates[4],
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        flywheel(&args, env)
    };
    let filled = dir.join("backfilled");
    copy_tree(&models, &filled);
    let text = ok(&backfill(&filled, &[], &[]));
    for d in dates {
        assert!(
            text.lines()
                .any(|l| l.starts_with(d) && l.contains("succeeded") && l.ends_with(" s")),
            "no progress line for {d}:\n{text}"
        );
    }
    // Separate single-date runs, in order (the lists' cooldowns read the earlier dates).
    let single = dir.join("single");
    copy_tree(&models, &single);
    for d in dates {
        ok(&run_at(
            d,
            input.to_str().unwrap(),
            single.to_str().unwrap(),
            &[],
        ));
    }
    let (a, b) = (files(&filled), files(&single));
    for d in ["2026-06-01", "2026-06-03", "2026-06-05"] {
        let of_date = |f: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
            f.iter()
                .filter(|(k, _)| k.contains(&format!("dt={d}/")) && !k.starts_with("_runs/"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let (fa, fb) = (of_date(&a), of_date(&b));
        assert!(fa.len() >= 15, "{d}: {} files", fa.len());
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (k, v) in &fa {
            assert!(
                fb[k] == *v,
                "{k}: the backfill differs from a single-date run"
            );
        }
    }
    // kpi_trends of the k-th date holds the KPI rows of that date and of the k − 1 before it.
    for (k, d) in dates.iter().enumerate() {
        let m = std::fs::read(filled.join(format!("_runs/dt={d}/manifest.json"))).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let rows = |t: &str| {
            m["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["table"] == t)
                .unwrap()["rows"]
                .as_u64()
                .unwrap()
        };
        // Each point date: every KPI row, and listed / entered / left of the two lists.
        let per_date = rows("referral_kpis") + rows("lifecycle_health") + 2 * 3;
        assert_eq!(rows("kpi_trends"), (k as u64 + 1) * per_date, "{d}");
    }
    the_last_report_shows_trends_and_changes(&filled, &dates);
    // Done dates are skipped; --force reruns them.
    let text = ok(&backfill(&filled, &[], &[]));
    assert_eq!(
        text.lines().filter(|l| l.contains(" skipped ")).count(),
        5,
        "{text}"
    );
    let text = ok(&backfill(&filled, &["--force"], &[]));
    assert_eq!(
        text.lines().filter(|l| l.contains(" succeeded ")).count(),
        5,
        "{text}"
    );
    // The first failure stops the backfill with that date's exit code.
    let broken = dir.join("broken");
    copy_tree(&models, &broken);
    let out = backfill(
        &broken,
        &[],
        &[("FLYWHEEL_COMMIT_FAIL_AFTER", "1".to_string())],
    );
    fails(&out, 4);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "went on after a failure:\n{stdout}"
    );
    assert!(
        stdout.starts_with(&format!("{} failed", dates[0])),
        "{stdout}"
    );
}

/// The report of the last date of a backfill, rendered in headless Chromium: every network KPI
/// of both KPI tables has a sparkline with one point per run date carrying that date's published
/// value, and band-edge lines; "since the previous run" shows each KPI's change equal to the
/// difference of the two dates' tables, and each list's entries and exits equal to the
/// differences of the two dates' CRM exports.
fn the_last_report_shows_trends_and_changes(out: &Path, dates: &[&str]) {
    let (previous, last) = (dates[dates.len() - 2], dates[dates.len() - 1]);
    let page = out.join(format!("reports/dt={last}/index.html"));
    let r = tools::render_page(&page, None);
    assert!(r.console.is_empty(), "console messages: {:?}", r.console);
    let value_of = |table: &str, date: &str| -> BTreeMap<String, Option<f64>> {
        tokio_rows(
            out,
            &format!("{table}/dt={date}"),
            &["scope", "kpi", "value"],
        )
        .iter()
        .filter_map(|row| row.strip_prefix("network,"))
        .map(|row| {
            let (kpi, v) = row.split_once(',').unwrap();
            (kpi.to_string(), v.parse::<f64>().ok())
        })
        .collect()
    };
    let point =
        regex::Regex::new(r#"<circle class="point" data-date="([^"]+)" data-value="([^"]*)""#)
            .unwrap();
    let mut charts = 0;
    for table in ["referral_kpis", "lifecycle_health"] {
        let per_date: Vec<BTreeMap<String, Option<f64>>> =
            dates.iter().map(|d| value_of(table, d)).collect();
        for kpi in per_date[dates.len() - 1].keys() {
            let start = r
                .dom
                .find(&format!("data-spark=\"{table}:{kpi}\""))
                .unwrap_or_else(|| panic!("no sparkline for {table}.{kpi}"));
            let svg = &r.dom[start..start + r.dom[start..].find("</svg>").unwrap()];
            let points: Vec<(String, String)> = point
                .captures_iter(svg)
                .map(|c| (c[1].to_string(), c[2].to_string()))
                .collect();
            let want: Vec<String> = dates.iter().map(|d| d.to_string()).collect();
            let got: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
            assert_eq!(got, want, "{table}.{kpi}: one point per run date");
            for ((_, raw), values) in points.iter().zip(&per_date) {
                assert_eq!(raw.parse::<f64>().ok(), values[kpi], "{table}.{kpi}");
            }
            if kpi != "k_factor" {
                assert!(
                    svg.contains(r#"<line class="edge" data-band="excellent""#),
                    "{table}.{kpi}"
                );
            }
            // The change since the previous run is the difference of the two tables.
            let row = regex::Regex::new(&format!(
                r#"data-delta-table="{table}" data-kpi="{kpi}" data-change="([^"]*)""#
            ))
            .unwrap();
            let shown = &row
                .captures(&r.dom)
                .unwrap_or_else(|| panic!("no change row for {table}.{kpi}"))[1];
            let before = value_of(table, previous)[kpi];
            let now = per_date[dates.len() - 1][kpi];
            let expected = before.zip(now).map(|(b, n)| n - b);
            assert_eq!(shown.parse::<f64>().ok(), expected, "{table}.{kpi}");
            charts += 1;
        }
    }
    assert_eq!(charts, 13, "every network KPI of both tables has a chart");
    // Entries and exits of each list: the differences of the two dates' CRM exports.
    for list in ["ambassador_candidates", "churn_alerts"] {
        let ids = |date: &str| listed_ids(out, list, date);
        let (before, now) = (ids(previous), ids(last));
        let moves = regex::Regex::new(&format!(
            r#"data-list-moves="{list}">.*?data-listed="(\d+)".*?data-entered="(\d+)".*?data-left="(\d+)""#
        ))
        .unwrap();
        let c = moves
            .captures(&r.dom)
            .unwrap_or_else(|| panic!("no list moves for {list}"));
        assert_eq!(c[1].parse::<usize>().unwrap(), now.len(), "{list} listed");
        assert_eq!(
            c[2].parse::<usize>().unwrap(),
            now.difference(&before).count(),
            "{list} entered"
        );
        assert_eq!(
            c[3].parse::<usize>().unwrap(),
            before.difference(&now).count(),
            "{list} left"
        );
    }
    assert!(r
        .dom
        .contains(&format!(r#"data-previous-date="{previous}""#)));
}

/// Drift: each run publishes `model_drift` (PSI of every feature and score against the
/// champion's training snapshot) and puts it in the manifest; on the training inputs every figure
/// is small. With every CRM customer made a community member (the refer model's strongest
/// feature) in a copy of the inputs, that feature's PSI passes 0.25, the refer score's too, the
/// log warns, and `flywheel models show` prints the figures.
#[test]
fn drift_figures_see_a_shifted_feature() {
    let dir = common::tempdir("e2e-drift");
    let input = dir.join("in");
    generate(&input, "1500");
    let out = dir.join("out");
    ok(&train_and_run(&input, &out));
    let drift_of = |out: &Path| -> Vec<serde_json::Value> {
        let m = std::fs::read(out.join(format!("_runs/dt={DATE}/manifest.json"))).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        m["drift"].as_array().unwrap().clone()
    };
    let psi = |drift: &[serde_json::Value], target: &str, variable: &str| -> f64 {
        drift
            .iter()
            .find(|d| d["target"] == target && d["variable"] == variable)
            .unwrap_or_else(|| panic!("no figure for {target} {variable}"))["psi"]
            .as_f64()
            .unwrap()
    };
    let before = drift_of(&out);
    // 21 features and the score, for each of the two models.
    assert_eq!(before.len(), 2 * 22, "{before:?}");
    assert!(psi(&before, "refer", "community_member") < 0.1);
    assert!(out
        .join(format!("model_drift/dt={DATE}/part-00000.parquet"))
        .exists());

    let shifted = dir.join("shifted");
    copy_tree(&input, &shifted);
    rewrite_parquet(&shifted.join("crm_customers/part-00000.parquet"), |b| {
        let i = b.schema().index_of("community_member").unwrap();
        let mut columns = b.columns().to_vec();
        columns[i] = Arc::new(arrow::array::BooleanArray::from(vec![true; b.num_rows()]));
        RecordBatch::try_new(b.schema(), columns).unwrap()
    });
    let out2 = dir.join("out-shifted");
    copy_tree(&out.join("models"), &out2.join("models"));
    let log = ok(&run_at(
        DATE,
        shifted.to_str().unwrap(),
        out2.to_str().unwrap(),
        &[],
    ));
    let after = drift_of(&out2);
    let (feature, score) = (
        psi(&after, "refer", "community_member"),
        psi(&after, "refer", "score"),
    );
    assert!(feature > 0.25, "community_member PSI {feature}");
    assert!(score > 0.25, "refer score PSI {score}");
    assert!(
        log.contains("has drifted") && log.contains("refer"),
        "{log}"
    );
    let shown = flywheel(
        &["models", "show", "refer"],
        &[("FLYWHEEL_OUTPUT", out2.display().to_string())],
    );
    let stderr = String::from_utf8_lossy(&shown.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("community_member") && l.contains("retrain")),
        "{stderr}"
    );
}

/// The realised quality of past scores: runs 180 and 90 days before DATE publish scores; the run
/// of DATE judges the refer scores of DATE − 90 and the churn scores of DATE − 180 (each the latest
/// run date a horizon old) against what the inputs now show. The churn figure equals an
/// independent computation with DuckDB from the raw inputs (tests/outcome_check.py); the training
/// AUC is the scoring version's holdout AUC; the manifest, metrics and report carry them. The run
/// of DATE − 180 has nothing to judge yet.
#[test]
fn earlier_scores_are_judged_once_their_horizon_has_passed() {
    let dir = common::tempdir("e2e-outcomes");
    let input = dir.join("in");
    generate(&input, "1500");
    let out = dir.join("out");
    train_all(input.to_str().unwrap(), out.to_str().unwrap(), &[]);
    let (churn_day, refer_day) = ("2025-12-03", "2026-03-03");
    for d in [churn_day, refer_day] {
        ok(&run_at(
            d,
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            &[],
        ));
    }
    let metrics = dir.join("metrics.prom");
    ok(&flywheel(
        &[
            "run",
            "--date",
            DATE,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        &[],
    ));
    let manifest = |d: &str| -> serde_json::Value {
        let m = std::fs::read(out.join(format!("_runs/dt={d}/manifest.json"))).unwrap();
        serde_json::from_slice(&m).unwrap()
    };
    assert_eq!(manifest(churn_day)["outcomes"], serde_json::json!([]));
    let outcomes = manifest(DATE)["outcomes"].as_array().unwrap().clone();
    let of = |t: &str| outcomes.iter().find(|o| o["target"] == t).unwrap().clone();
    let (refer, churn) = (of("refer"), of("churn"));
    assert_eq!(refer["scored_date"], refer_day);
    assert_eq!(churn["scored_date"], churn_day);
    let models = manifest(DATE)["model_versions"].clone();
    for (o, target) in [(&refer, "refer"), (&churn, "churn")] {
        assert_eq!(o["model_version"], models[target], "{target}");
        assert_eq!(o["is_champion"], true);
        let auc = o["realised_auc"].as_f64().unwrap();
        assert!(auc > 0.5 && auc <= 1.0, "{target}: {auc}");
        let version = models[target].as_str().unwrap();
        let file = std::fs::read(out.join(format!("models/{target}/{version}/model.json")))
            .unwrap_or_else(|e| panic!("{target} model file: {e}"));
        let file: serde_json::Value = serde_json::from_slice(&file).unwrap();
        let trained = file["holdout_metrics"]["roc_auc"].as_f64().unwrap();
        assert_eq!(o["training_auc"].as_f64().unwrap(), trained);
        assert_eq!(o["auc_change"].as_f64().unwrap(), auc - trained);
        assert!(o["positives"].as_u64().unwrap() > 0);
    }
    let text = python_check(
        "outcome_check.py",
        &[
            out.as_os_str(),
            input.as_os_str(),
            DATE.as_ref(),
            churn_day.as_ref(),
            "180".as_ref(),
        ],
    );
    assert!(text.contains("independent:"), "{text}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.lines()
            .any(|l| l.starts_with("flywheel_model_realised_auc{")
                && l.contains("target=\"churn\"")
                && l.contains(&format!("scored_date=\"{churn_day}\""))),
        "{prom}"
    );
    let html = std::fs::read_to_string(out.join(format!("reports/dt={DATE}/index.html"))).unwrap();
    for (o, target) in [(&refer, "refer"), (&churn, "churn")] {
        let raw = o["realised_auc"].as_f64().unwrap().to_string();
        assert!(
            html.contains(&format!(
                r#"data-outcome="{target}" data-realised-auc="{raw}""#
            )),
            "{target} outcome not in the report"
        );
    }
}

/// `flywheel run` with extra environment, killed when it outlives `deadline` (a hang fails the
/// caller's test instead of stalling it): its output and how long it took.
fn run_within(
    args: &[&str],
    env: &[(&str, String)],
    deadline: std::time::Duration,
) -> (Output, std::time::Duration) {
    let mut cmd = flywheel_command();
    cmd.args(args)
        .env_remove("FLYWHEEL_CONFIG")
        .env("FLYWHEEL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().expect("start flywheel");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "flywheel {args:?} did not finish in {deadline:?}: a hang\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

/// The nightly job at 100k customers under a 256 MiB query-engine budget, with sort-merge joins
/// (`FLYWHEEL_JOINS=sort_merge`: the inputs are small enough for hash joins in 256 MiB), publishes
/// exactly the tables of a run without a budget (hash joins), and its budgeted operators stay
/// within the budget; at the
/// smallest budget allowed (64 MiB) it either completes with the same tables (spilling) or stops
/// with exit code 6 and a message naming `memory_limit_mb`. None of them may hang: each run is
/// killed after 10 minutes, which fails the test (DataFusion 55's repartition spill stall,
/// apache/datafusion#24883, is what this guards against; see engine::memory).
#[test]
fn a_small_memory_budget_gives_the_same_tables_and_never_hangs() {
    let dir = common::tempdir("e2e-budget");
    let (input, small) = (dir.join("in"), dir.join("small"));
    generate(&input, "100000");
    // Champions from a small set: the models only have to exist, and training at 100k in a
    // debug build would take minutes.
    generate(&small, "3000");
    let models = dir.join("models-only");
    train_all(small.to_str().unwrap(), models.to_str().unwrap(), &[]);
    let deadline = std::time::Duration::from_secs(600);
    let mut outcome = BTreeMap::new();
    for (name, budget) in [("unbounded", "0"), ("256", "256"), ("64", "64")] {
        let out = dir.join(name);
        copy_tree(&models, &out);
        let args = [
            "run",
            "--date",
            DATE,
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        let joins = if name == "256" { "sort_merge" } else { "" };
        let env = [
            ("FLYWHEEL_MEMORY_LIMIT_MB", budget.to_string()),
            ("FLYWHEEL_LOG", "info".to_string()),
            ("FLYWHEEL_JOINS", joins.to_string()),
        ];
        let (result, took) = run_within(&args, &env, deadline);
        eprintln!("budget {name}: exit {:?} in {took:?}", result.status.code());
        outcome.insert(name, (out, result));
    }
    let tables = |name: &str| tables_only(published(&outcome[name].0));
    let unbounded = tables("unbounded");
    assert!(unbounded.len() > 20, "{} files", unbounded.len());
    let (_, at_256) = &outcome["256"];
    let log = ok(at_256);
    assert!(log.contains("joins are sort-merge joins"), "{log}");
    assert!(
        tables("256") == unbounded,
        "a 256 MiB budget changed the tables"
    );
    let peak = regex::Regex::new(r"budget_mib=256 peak_reserved_mib=([0-9.]+)")
        .unwrap()
        .captures(&log)
        .unwrap_or_else(|| panic!("no budget line in the log:\n{log}"))[1]
        .parse::<f64>()
        .unwrap();
    assert!(peak > 0.0 && peak <= 256.0, "peak {peak} MiB");
    let (_, at_64) = &outcome["64"];
    match at_64.status.code() {
        Some(0) => assert!(
            tables("64") == unbounded,
            "a 64 MiB budget changed the tables"
        ),
        Some(6) => {
            let stderr = String::from_utf8_lossy(&at_64.stderr);
            assert!(stderr.contains("memory_limit_mb"), "{stderr}");
        }
        other => panic!(
            "64 MiB: exit {other:?}\n{}",
            String::from_utf8_lossy(&at_64.stderr)
        ),
    }
}

/// The CRM lists: the CSVs load with strict readers (Python's csv, DuckDB with explicit types),
/// and a customer listed on one run date is not listed again within the cooldown.
#[test]
fn crm_lists_load_strictly_and_respect_the_cooldown() {
    let dir = common::tempdir("e2e-lists");
    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "3000");
    ok(&train_and_run(&input, &out));
    let text = python_check(
        "csv_check.py",
        &[out.as_os_str(), std::ffi::OsStr::new(DATE)],
    );
    assert!(text.contains("csv ok"), "{text}");

    let later = "2026-06-11";
    ok(&run_at(
        later,
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    for list in ["ambassador_candidates", "churn_alerts"] {
        let ids = |date: &str| listed_ids(&out, list, date);
        let (first, second) = (ids(DATE), ids(later));
        assert!(!first.is_empty(), "{list} is empty on {DATE}");
        assert!(
            first.is_disjoint(&second),
            "{list}: listed again within the cooldown"
        );
    }
}

/// The morning report renders in a real headless browser (Debian's Chromium) with no console
/// errors and no external resource, and shows this run's KPI values, model charts and list sizes.
#[test]
fn the_html_report_renders_in_chromium_and_shows_the_run() {
    let dir = common::tempdir("e2e-report");
    // The console check can fail: a page that throws is caught.
    let bad = dir.join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>",
    )
    .unwrap();
    let r = tools::render_page(&bad, None);
    assert!(
        r.console.iter().any(|l| l.contains("boom")),
        "the console check misses an uncaught error: {:?}",
        r.console
    );

    let (input, out) = (dir.join("in"), dir.join("out"));
    generate(&input, "3000");
    let text = ok(&train_and_run(&input, &out));
    let page = out.join(format!("reports/dt={DATE}/index.html"));
    assert!(
        text.contains("index.html"),
        "the summary names the report:\n{text}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "<script src",
        "<link ",
    ] {
        assert!(
            !html.contains(external),
            "the report is not self-contained: {external}"
        );
    }

    let r = tools::render_page(&page, None);
    assert!(r.console.is_empty(), "console messages: {:?}", r.console);
    assert!(r.dom.contains(&format!("flywheel morning report — {DATE}")));

    // Every network KPI of both tables is on the page with its exact value, shown rounded.
    let shown = regex::Regex::new(
        r#"data-table="(\w+)" data-scope="network" data-kpi="(\w+)" data-value="([^"]*)">([^<]*)<"#,
    )
    .unwrap();
    let on_page: BTreeMap<(String, String), (String, String)> = shown
        .captures_iter(&r.dom)
        .map(|c| ((c[1].into(), c[2].into()), (c[3].into(), c[4].into())))
        .collect();
    let mut checked = 0;
    for table in ["referral_kpis", "lifecycle_health"] {
        let rows = tokio_rows(
            &out,
            &format!("{table}/dt={DATE}"),
            &["scope", "kpi", "value"],
        );
        for row in rows.iter().filter(|r| r.starts_with("network,")) {
            let cells: Vec<&str> = row.split(',').collect();
            let (kpi, value) = (cells[1], cells[2]);
            let (raw, text) = on_page
                .get(&(table.to_string(), kpi.to_string()))
                .unwrap_or_else(|| panic!("{table}.{kpi} is not on the page"));
            if value.is_empty() {
                assert_eq!((raw.as_str(), text.as_str()), ("", "–"), "{table}.{kpi}");
            } else {
                let v: f64 = value.parse().unwrap();
                assert_eq!(raw.parse::<f64>().unwrap(), v, "{table}.{kpi}");
                let tol = if kpi.ends_with("nps") { 0.05 } else { 0.0005 };
                let shown: f64 = text.parse().unwrap();
                assert!(
                    (shown - v).abs() <= tol + 1e-12,
                    "{table}.{kpi}: {text} for {v}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} network KPIs checked");

    // The charts: funnels, and ROC / calibration / lift for each champion model.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("_runs/dt={DATE}/manifest.json"))).unwrap(),
    )
    .unwrap();
    for id in ["aarrr", "channels"] {
        assert!(
            r.dom.contains(&format!("<svg id=\"{id}\"")),
            "no {id} chart"
        );
    }
    for target in ["refer", "churn"] {
        let version = manifest["model_versions"][target].as_str().unwrap();
        assert!(r.dom.contains(&format!("p_{target} — version {version}")));
        for chart in ["roc", "calibration", "lift"] {
            assert!(
                r.dom.contains(&format!("<svg id=\"{chart}-{target}\"")),
                "no {chart} chart for {target}"
            );
        }
    }
    // List sizes agree with the published CSVs.
    for list in ["ambassador_candidates", "churn_alerts"] {
        let csv = std::fs::read_to_string(out.join(format!("exports/{list}/dt={DATE}/{list}.csv")))
            .unwrap();
        let n = csv.lines().count() - 1;
        assert!(
            r.dom.contains(&format!("data-list=\"{list}\">{n}<")),
            "{list}: {n} rows not shown"
        );
    }

    // It paints: a screenshot of the full page is a real PNG of some size.
    let png = dir.join("report.png");
    let shot = tools::render_page(&page, Some(&png));
    assert!(shot.console.is_empty(), "{:?}", shot.console);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}

/// A published table's rows as text (common::read_rows on a runtime of its own).
fn tokio_rows(out: &Path, folder: &str, columns: &[&str]) -> Vec<String> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::read_rows(out, folder, columns))
}

/// The customer ids of a CRM list's CSV export of `date` (customer_id is its second column).
fn listed_ids(out: &Path, list: &str, date: &str) -> std::collections::BTreeSet<String> {
    let text =
        std::fs::read_to_string(out.join(format!("exports/{list}/dt={date}/{list}.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

/// Copy a folder tree (test set-up only).
fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in files(from) {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

/// The published table files of an output grouped by folder (`<table>/dt=D`), without the run
/// bookkeeping (`_runs`, `_staging`, `_locks`) and the model registry.
fn table_folders(f: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    for (k, v) in f {
        if k.starts_with('_') || k.starts_with("models/") {
            continue;
        }
        let (folder, file) = k.rsplit_once('/').unwrap();
        out.entry(folder.to_string())
            .or_default()
            .insert(file.to_string(), v.clone());
    }
    out
}

/// Every table folder of `now` is whole: equal to its `old` or its `new` version, file for file.
/// Returns how many of the folders that differ between the versions are old and how many new.
fn assert_each_table_whole(
    now: &BTreeMap<String, Vec<u8>>,
    old: &BTreeMap<String, Vec<u8>>,
    new: &BTreeMap<String, Vec<u8>>,
    when: &str,
) -> (usize, usize) {
    let (now, old, new) = (table_folders(now), table_folders(old), table_folders(new));
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>(),
        "{when}: a table folder is missing or extra"
    );
    let (mut olds, mut news) = (0, 0);
    for (folder, files) in &now {
        if new.get(folder) == old.get(folder) && Some(files) == new.get(folder) {
            continue; // the same in both versions (e.g. no rejects either time)
        }
        if Some(files) == new.get(folder) {
            news += 1;
        } else if Some(files) == old.get(folder) {
            olds += 1;
        } else {
            panic!("{when}: {folder} is neither its old nor its new version");
        }
    }
    (olds, news)
}

fn generate_seeded(dir: &Path, customers: &str, seed: &str) {
    ok(&flywheel(
        &[
            "generate",
            "--customers",
            customers,
            "--seed",
            seed,
            "--as-of",
            DATE,
            "--out",
            dir.to_str().unwrap(),
        ],
        &[],
    ));
}

/// A rerun of a date (new inputs) killed with SIGKILL after each step of its commit: at every
/// point each table of the date is whole, in its old or its new version; the next command
/// (`flywheel recover`, or the next run) finishes the commit, after which the output is the new
/// version exactly, without staging or lock left, the date's completion marker written last and
/// the killed run in the ledger. A storage error during the commit (injected) exits 4 and is
/// finished the same way. A reader polling the folders during a rerun never sees one empty.
#[test]
fn a_commit_stopped_at_any_step_leaves_whole_tables_and_is_finished_next() {
    use std::os::unix::process::ExitStatusExt;
    let dir = common::tempdir("e2e-crash");
    let (old_in, new_in) = (dir.join("in-old"), dir.join("in-new"));
    generate_seeded(&old_in, "1500", "7");
    generate_seeded(&new_in, "1500", "8");
    let base = dir.join("base");
    ok(&train_and_run(&old_in, &base));
    let old = files(&base);
    let fresh = dir.join("fresh");
    copy_tree(&base, &fresh);
    ok(&run(&new_in, &fresh));
    let new = files(&fresh);
    let marker = format!("_runs/dt={DATE}/_SUCCESS");
    assert!(old.contains_key(&marker) && new.contains_key(&marker));
    assert_ne!(table_folders(&old), table_folders(&new));

    let mut k = 1;
    loop {
        let out = dir.join(format!("kill-{k}"));
        copy_tree(&base, &out);
        let killed = run_at(
            DATE,
            new_in.to_str().unwrap(),
            out.to_str().unwrap(),
            &[
                ("FLYWHEEL_COMMIT_KILL_AFTER", k.to_string()),
                // The killed run's scratch folder stays behind: in this test's folder.
                (
                    "FLYWHEEL_SCRATCH",
                    dir.join("scratch").display().to_string(),
                ),
            ],
        );
        if killed.status.success() {
            // Past the commit's last step: it ran through.
            assert!(k > 20, "the commit has only {k} steps?");
            assert_eq!(table_folders(&files(&out)), table_folders(&new));
            break;
        }
        assert_eq!(killed.status.signal(), Some(9), "step {k}: not killed");
        let now = files(&out);
        let (olds, news) =
            assert_each_table_whole(&now, &old, &new, &format!("killed after step {k}"));
        if k == 1 {
            assert_eq!(
                news, 0,
                "the journal is written before anything published is touched"
            );
        }
        // The marker says complete only when no table is changing.
        if now.contains_key(&marker) {
            assert!(
                olds == 0 || news == 0,
                "step {k}: marker present mid-commit"
            );
        }
        // The next command finishes the commit: `recover` after odd steps, the next run after even.
        let text = if k % 2 == 1 {
            ok(&flywheel(
                &["recover", "--output", out.to_str().unwrap()],
                &[],
            ))
        } else {
            ok(&run(&new_in, &out))
        };
        let after = files(&out);
        assert_eq!(
            table_folders(&after),
            table_folders(&new),
            "after step {k}: {text}"
        );
        assert!(
            after.contains_key(&marker),
            "after step {k}: no completion marker"
        );
        assert!(
            !after
                .keys()
                .any(|p| p.starts_with("_staging/") || p.starts_with("_locks/")),
            "after step {k}: staging or a lock left behind"
        );
        assert!(
            !out.join("_staging").exists(),
            "after step {k}: an empty staging tree"
        );
        let runs = ok(&flywheel(&["runs", "--output", out.to_str().unwrap()], &[]));
        assert!(
            runs.contains("abandoned"),
            "after step {k}: the killed run is not in the ledger:\n{runs}"
        );
        k += 1;
    }

    // A storage error in the middle of the commit: exit 4, the tables whole, the ledger says so;
    // the next run finishes the commit.
    let out = dir.join("fail");
    copy_tree(&base, &out);
    let failed = run_at(
        DATE,
        new_in.to_str().unwrap(),
        out.to_str().unwrap(),
        &[("FLYWHEEL_COMMIT_FAIL_AFTER", "6".to_string())],
    );
    let stderr = fails(&failed, 4);
    assert!(stderr.contains("flywheel recover"), "{stderr}");
    assert_each_table_whole(&files(&out), &old, &new, "after a storage error");
    let runs = ok(&flywheel(&["runs", "--output", out.to_str().unwrap()], &[]));
    assert!(
        runs.lines()
            .any(|l| l.contains("failed") && l.contains("   4 ")),
        "{runs}"
    );
    ok(&run(&new_in, &out));
    assert_eq!(table_folders(&files(&out)), table_folders(&new));

    // A reader polling every table folder during an ordinary rerun never finds one empty.
    let out = dir.join("poll");
    copy_tree(&base, &out);
    let folders: Vec<PathBuf> = table_folders(&old).keys().map(|f| out.join(f)).collect();
    let mut child = flywheel_command()
        .args([
            "run",
            "--date",
            DATE,
            "--input",
            new_in.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .env("FLYWHEEL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut polls = 0;
    while child.try_wait().unwrap().is_none() {
        for f in &folders {
            let n = std::fs::read_dir(f).map(|d| d.count()).unwrap_or(0);
            assert!(n > 0, "{} was empty during a rerun", f.display());
        }
        polls += 1;
    }
    assert!(child.wait().unwrap().success());
    assert!(polls > 0);
    assert_eq!(table_folders(&files(&out)), table_folders(&new));

    // Two runs of one date started together: one runs, the other is refused at once (exit 7);
    // the output equals a single run's.
    let out = dir.join("twice");
    copy_tree(&base, &out);
    let spawn = || {
        flywheel_command()
            .args([
                "run",
                "--date",
                DATE,
                "--input",
                new_in.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ])
            .env("FLYWHEEL_LOG", "warn")
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(7)],
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert_eq!(table_folders(&files(&out)), table_folders(&new));
}

/// An object_store client of a SeaweedFS bucket, for checking what flywheel wrote there.
struct Bucket {
    store: object_store::aws::AmazonS3,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    fn new(server: &tools::Seaweed, bucket: &str) -> Bucket {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(tools::ACCESS_KEY)
            .with_secret_access_key(tools::SECRET_KEY)
            .build()
            .unwrap();
        Bucket {
            store,
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Every object below `prefix`, relative path → bytes.
    fn files(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        use futures::TryStreamExt;
        use object_store::{ObjectStore, ObjectStoreExt};
        self.rt.block_on(async {
            let p = object_store::path::Path::from(prefix);
            let metas: Vec<_> = self.store.list(Some(&p)).try_collect().await.unwrap();
            let mut out = BTreeMap::new();
            for m in metas {
                let bytes = self
                    .store
                    .get(&m.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let rel = m.location.as_ref()[prefix.len() + 1..].to_string();
                out.insert(rel, bytes.to_vec());
            }
            out
        })
    }

    /// Wait until the server takes writes again (after a restart its ports open before its
    /// volumes are ready): a probe object is written, then deleted.
    fn wait_writable(&self) {
        use object_store::ObjectStoreExt;
        let probe = object_store::path::Path::from("_probe/ready");
        let started = std::time::Instant::now();
        loop {
            let put = self.rt.block_on(
                self.store
                    .put(&probe, bytes::Bytes::from_static(b"1").into()),
            );
            if put.is_ok() {
                self.rt.block_on(self.store.delete(&probe)).unwrap();
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "SeaweedFS takes no writes after a restart: {put:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// Copy every object below `from` to the same place below `to`.
    fn copy(&self, from: &str, to: &str) {
        use futures::TryStreamExt;
        use object_store::{ObjectStore, ObjectStoreExt};
        self.rt.block_on(async {
            let p = object_store::path::Path::from(from);
            let metas: Vec<_> = self.store.list(Some(&p)).try_collect().await.unwrap();
            for m in metas {
                let rel = &m.location.as_ref()[from.len() + 1..];
                let dest = object_store::path::Path::from(format!("{to}/{rel}"));
                self.store.copy(&m.location, &dest).await.unwrap();
            }
        })
    }
}

/// The same crash safety on a real S3 server (SeaweedFS): a rerun killed after each commit step
/// leaves every table whole and `flywheel recover` finishes it. Then the server itself goes
/// away in the middle of a run, killed and frozen (SIGSTOP): the run exits 4 within the
/// documented bound, the date's previous outputs are intact, the ledger records the failed run,
/// and once the server is back the next run succeeds.
#[test]
fn s3_commits_survive_crashes_and_store_outages() {
    use std::os::unix::process::ExitStatusExt;
    let dir = common::tempdir("e2e-s3-crash");
    let server = tools::Seaweed::start_at(dir.join("weed"), 7);
    server.create_bucket("crash");
    let env = server.env();
    let bucket = Bucket::new(&server, "crash");
    let (old_in, new_in) = (dir.join("in-old"), dir.join("in-new"));
    generate_seeded(&old_in, "800", "7");
    generate_seeded(&new_in, "800", "8");
    let (old_in, new_in) = (old_in.to_str().unwrap(), new_in.to_str().unwrap());
    train_all(old_in, "s3://crash/base", &env);
    ok(&run_at(DATE, old_in, "s3://crash/base", &env));
    let old = bucket.files("base");
    bucket.copy("base", "fresh");
    ok(&run_at(DATE, new_in, "s3://crash/fresh", &env));
    let new = bucket.files("fresh");
    let marker = format!("_runs/dt={DATE}/_SUCCESS");
    assert!(new.contains_key(&marker));

    let mut k = 1;
    loop {
        let prefix = format!("kill-{k}");
        bucket.copy("base", &prefix);
        let url = format!("s3://crash/{prefix}");
        let mut kill_env = env.clone();
        kill_env.push(("FLYWHEEL_COMMIT_KILL_AFTER", k.to_string()));
        // The killed run's scratch folder stays behind: in this test's folder.
        kill_env.push((
            "FLYWHEEL_SCRATCH",
            dir.join("scratch").display().to_string(),
        ));
        let killed = run_at(DATE, new_in, &url, &kill_env);
        if killed.status.success() {
            assert!(k > 20, "the commit has only {k} steps?");
            break;
        }
        assert_eq!(killed.status.signal(), Some(9), "step {k}: not killed");
        assert_each_table_whole(
            &bucket.files(&prefix),
            &old,
            &new,
            &format!("S3, killed after step {k}"),
        );
        ok(&flywheel(&["recover", "--output", &url], &env));
        let after = bucket.files(&prefix);
        assert_eq!(
            table_folders(&after),
            table_folders(&new),
            "S3, after step {k}"
        );
        assert!(after.contains_key(&marker));
        assert!(!after
            .keys()
            .any(|p| p.starts_with("_staging/") || p.starts_with("_locks/")));
        k += 1;
    }

    // The server goes away once the run holds its lock: killed, then (restarted) frozen.
    let weed_dir = dir.join("weed");
    let mut server = server;
    for outage in ["killed", "frozen"] {
        let prefix = format!("outage-{outage}");
        bucket.copy("base", &prefix);
        let url = format!("s3://crash/{prefix}");
        let lock = object_store::path::Path::from(format!("{prefix}/_locks/dt={DATE}.json"));
        let mut cmd = flywheel_command();
        cmd.args(["run", "--date", DATE, "--input", new_in, "--output", &url])
            .env("FLYWHEEL_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        // Wait for the run's lock, then stop the server.
        let waited = std::time::Instant::now();
        loop {
            use object_store::ObjectStoreExt;
            if bucket.rt.block_on(bucket.store.head(&lock)).is_ok() {
                break;
            }
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(30),
                "the run never took its lock"
            );
        }
        let stopped = std::time::Instant::now();
        if outage == "killed" {
            server.kill();
        } else {
            server.signal(libc::SIGSTOP);
        }
        let out = child.wait_with_output().unwrap();
        let took = stopped.elapsed();
        let stderr = fails(&out, 4);
        eprintln!("{outage} store: exit 4 after {:.1} s", took.as_secs_f64());
        assert!(
            took < std::time::Duration::from_secs(60),
            "{outage} store: the run took {took:?} to give up"
        );
        assert!(stderr.contains("storage error"), "{stderr}");
        if outage == "killed" {
            server = tools::Seaweed::start_at(weed_dir.clone(), 7);
        } else {
            server.signal(libc::SIGCONT);
        }
        bucket.wait_writable();
        // The date's previous outputs are intact.
        assert_eq!(
            table_folders(&bucket.files(&prefix)),
            table_folders(&old),
            "{outage}"
        );
        // The next run succeeds and the ledger has the failed run.
        ok(&run_at(DATE, new_in, &url, &env));
        assert_eq!(
            table_folders(&bucket.files(&prefix)),
            table_folders(&new),
            "{outage}"
        );
        let runs = ok(&flywheel(&["runs", "--output", &url], &env));
        let statuses: Vec<&str> = runs
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert!(
            statuses.iter().filter(|s| **s == "succeeded").count() == 2
                && statuses.iter().any(|s| *s == "failed" || *s == "abandoned"),
            "{outage} store: the ledger does not hold the failed run:\n{runs}"
        );
    }
    drop(server);
}
