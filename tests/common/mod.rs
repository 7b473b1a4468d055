//! Helpers shared by the end-to-end tests: hand-made CSV inputs turned into Parquet with the
//! contracts' types, runs of the real pipeline, and published tables read back as text rows.
#![allow(dead_code)]

pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use flywheel_pipelines::config::Config;
use flywheel_pipelines::contracts;
use flywheel_pipelines::engine::encode::parquet_bytes;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary directory (the system's temporary directory, or `CARGO_TARGET_TMPDIR`),
/// removed when the test ends well and kept when it fails, for inspection (a failing test
/// panics, and the directory is dropped while it unwinds).
pub fn tempdir(name: &str) -> TempDir {
    let base = std::env::var("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(Some(dir))
}

/// A test's temporary directory: see [`tempdir`].
pub struct TempDir(Option<PathBuf>);

impl TempDir {
    /// The directory, never removed (e.g. one shared by every test of a binary).
    #[allow(dead_code)]
    pub fn keep(mut self) -> PathBuf {
        self.0.take().unwrap()
    }
}

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        self.0.as_ref().unwrap()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.as_ref().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() {
                eprintln!("kept for inspection: {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Convert `<case>/inputs/<table>.csv` into `<dir>/<table>/part-0.parquet` typed by the contract.
/// An empty CSV field is null.
pub fn csv_inputs_to_parquet(case_inputs: &Path, dir: &Path) {
    let empty_is_null = regex::Regex::new("^$").unwrap();
    for table in contracts::inputs() {
        let csv = case_inputs.join(format!("{table}.csv"));
        let schema = contracts::contract(table).unwrap().schema();
        let batches: Vec<RecordBatch> = if csv.exists() {
            let file = std::fs::File::open(&csv).unwrap();
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_null_regex(empty_is_null.clone())
                .build(file)
                .unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
            reader
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{}: {e}", csv.display()))
        } else {
            vec![]
        };
        let bytes = parquet_bytes(&schema, &batches).unwrap();
        std::fs::create_dir_all(dir.join(table)).unwrap();
        std::fs::write(dir.join(table).join("part-0.parquet"), bytes).unwrap();
    }
}

pub fn config(input: &Path, output: &Path) -> Config {
    Config {
        input: input.display().to_string(),
        output: output.display().to_string(),
        ..Config::default()
    }
}

/// Read one partition of a published table the way analysts do (the table folder with the
/// `dt=` folders as a date column) and render the named columns as CSV-like text rows, in file
/// order. `folder` is `<table folder>/dt=<date>`.
pub async fn read_rows(output: &Path, folder: &str, columns: &[&str]) -> Vec<String> {
    let (table, date) = folder
        .rsplit_once("/dt=")
        .unwrap_or_else(|| panic!("{folder} is not <table>/dt=<date>"));
    let ctx = SessionContext::new();
    let path = format!("{}/", output.join(table).display());
    let options =
        ParquetReadOptions::default().table_partition_cols(vec![("dt".into(), DataType::Date32)]);
    ctx.register_parquet("t", &path, options).await.unwrap();
    let cols = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let batches = ctx
        .sql(&format!("SELECT {cols} FROM t WHERE dt = DATE '{date}'"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    render(&batches)
}

pub fn render(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        let cols: Vec<Arc<dyn Array>> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            let cells: Vec<String> = cols
                .iter()
                .map(|c| {
                    let s = c
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .unwrap();
                    if s.is_null(i) {
                        String::new()
                    } else {
                        s.value(i).to_string()
                    }
                })
                .collect();
            rows.push(cells.join(","));
        }
    }
    rows
}

/// `<case>/expected/<table>.csv`: a header naming the columns to compare, then the rows in the
/// published order.
pub fn expected(path: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    (header, lines.map(|l| l.trim_end().to_string()).collect())
}
