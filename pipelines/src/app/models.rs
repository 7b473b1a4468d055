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
