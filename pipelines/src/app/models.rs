//! The model registry from the command line: list, show, promote, roll back.

use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::steps::scoring::{ModelFile, Registry, Target};

/// One model version of a target, and whether it is the champion.
pub struct Listed {
    pub target: Target,
    pub version: String,
    pub champion: bool,
    pub file: ModelFile,
}

/// Every version of every target, oldest first.
pub async fn list(cfg: &Config) -> Result<Vec<Listed>> {
    let registry = Registry::open(cfg)?;
    let mut out = Vec::new();
    for target in Target::ALL {
        let champion = registry.champion(target).await?.version;
        for version in registry.versions(target).await? {
            let file = registry.load(target, &version).await?;
            out.push(Listed {
                target,
                champion: champion.as_deref() == Some(version.as_str()),
                version,
                file,
            });
        }
    }
    Ok(out)
}

/// A model file: `version`, or the champion's.
pub async fn show(cfg: &Config, target: Target, version: Option<String>) -> Result<ModelFile> {
    let registry = Registry::open(cfg)?;
    let version =
        match version {
            Some(v) => v,
            None => registry.champion(target).await?.version.ok_or_else(|| {
                FlywheelError::MissingModel {
                    target: target.name().to_string(),
                    registry: registry.location(),
                }
            })?,
        };
    registry.load(target, &version).await
}

/// Make `version` the champion of `target`.
pub async fn promote(cfg: &Config, target: Target, version: &str) -> Result<()> {
    Registry::open(cfg)?.promote(target, version).await
}

/// Return `target` to its previous champion; returns that version.
pub async fn rollback(cfg: &Config, target: Target) -> Result<String> {
    Registry::open(cfg)?.rollback(target).await
}

/// The drift figures of the last run that has some for `target`: its date and, per variable,
/// (variable, kind, PSI, reading, model version); read from the run manifests of the output.
pub async fn last_drift(
    cfg: &Config,
    target: Target,
) -> Result<Option<(String, Vec<(String, String, f64, String, String)>)>> {
    let output = crate::storage::Root::parse(&cfg.output)?;
    let mut manifests: Vec<String> = output
        .list("_runs/")
        .await?
        .into_iter()
        .map(|l| l.path)
        .filter(|p| p.starts_with("_runs/dt=") && p.ends_with("/manifest.json"))
        .collect();
    manifests.sort();
    for path in manifests.iter().rev() {
        let Some(bytes) = output.get(path).await? else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let rows: Vec<_> = m["drift"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["target"] == target.name())
            .map(|d| {
                let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                let psi = d["psi"].as_f64().unwrap_or(f64::NAN);
                (
                    text("variable"),
                    text("kind"),
                    psi,
                    text("reading"),
                    text("model_version"),
                )
            })
            .collect();
        if !rows.is_empty() {
            let date = m["run_date"].as_str().unwrap_or_default().to_string();
            return Ok(Some((date, rows)));
        }
    }
    Ok(None)
}
