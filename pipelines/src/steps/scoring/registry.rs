//! The model registry in object storage: `<models root>/<target>/<version>/model.json` per
//! version and `<target>/champion.json`, the champion pointer with its history (for rollback).

use std::collections::BTreeMap;

use flywheel_models::ModelFile;
use serde::{Deserialize, Serialize};

use super::target::Target;
use crate::config::Config;
use crate::error::{FlywheelError, Result};
use crate::storage::Root;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Champion {
    pub version: Option<String>,
    /// Earlier champions, newest last (for rollback).
    pub history: Vec<String>,
}

pub struct Registry {
    root: Root,
}

impl Registry {
    pub fn open(cfg: &Config) -> Result<Registry> {
        Ok(Registry {
            root: Root::parse(&cfg.models_root())?,
        })
    }

    /// The registry's root URL, for messages.
    pub fn location(&self) -> String {
        self.root.url.clone()
    }

    pub async fn load(&self, target: Target, version: &str) -> Result<ModelFile> {
        let rel = format!("{}/{version}/model.json", target.name());
        let bytes = self.root.get(&rel).await?.ok_or_else(|| {
            FlywheelError::Model(format!(
                "no model {version} for {} at {}",
                target.name(),
                self.root.display(&rel)
            ))
        })?;
        let file: ModelFile = serde_json::from_slice(&bytes).map_err(|e| {
            FlywheelError::Model(format!(
                "{} is not a valid model file ({e}); retrain with `flywheel train`",
                self.root.display(&rel)
            ))
        })?;
        file.model.check().map_err(|e| {
            FlywheelError::Model(format!(
                "{} is not a usable model file ({e}); retrain with `flywheel train`",
                self.root.display(&rel)
            ))
        })?;
        if file.format != 1 || file.target != target.name() {
            return Err(FlywheelError::Model(format!(
                "{} is a {} model of format {}; expected a {} model of format 1",
                self.root.display(&rel),
                file.target,
                file.format,
                target.name()
            )));
        }
        Ok(file)
    }

    pub async fn champion(&self, target: Target) -> Result<Champion> {
        let rel = format!("{}/champion.json", target.name());
        match self.root.get(&rel).await? {
            None => Ok(Champion::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                FlywheelError::Model(format!("{} is corrupt: {e}", self.root.display(&rel)))
            }),
        }
    }

    async fn set_champion(&self, target: Target, champion: &Champion) -> Result<()> {
        let json = serde_json::to_vec_pretty(champion).map_err(FlywheelError::internal)?;
        self.root
            .put(&format!("{}/champion.json", target.name()), json.into())
            .await
    }

    /// Save a model version: its file, then its model card (`card.md`, see `card`).
    pub async fn save(&self, file: &ModelFile) -> Result<()> {
        let json = serde_json::to_vec_pretty(file).map_err(FlywheelError::internal)?;
        let folder = format!("{}/{}", file.target, file.version);
        self.root
            .put(&format!("{folder}/model.json"), json.into())
            .await?;
        let target = Target::parse(&file.target)?[0];
        let card = super::card::markdown(target, file);
        self.root
            .put(&format!("{folder}/card.md"), card.into())
            .await
    }

    pub async fn versions(&self, target: Target) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .root
            .list(target.name())
            .await?
            .into_iter()
            .filter_map(|listed| {
                let mut parts = listed.path.split('/');
                let (_, v, f) = (parts.next()?, parts.next()?, parts.next()?);
                (f == "model.json").then(|| v.to_string())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn promote(&self, target: Target, version: &str) -> Result<()> {
        self.load(target, version).await?;
        let mut c = self.champion(target).await?;
        if c.version.as_deref() == Some(version) {
            return Ok(());
        }
        if let Some(old) = c.version.take() {
            c.history.push(old);
        }
        c.version = Some(version.to_string());
        self.set_champion(target, &c).await
    }

    pub async fn rollback(&self, target: Target) -> Result<String> {
        let mut c = self.champion(target).await?;
        let previous = c.history.pop().ok_or_else(|| {
            FlywheelError::Config(format!(
                "{} has no earlier champion to roll back to",
                target.name()
            ))
        })?;
        c.version = Some(previous.clone());
        self.set_champion(target, &c).await?;
        Ok(previous)
    }
}

/// The champion pointer of every target, read once per run.
pub async fn champions(registry: &Registry) -> Result<BTreeMap<Target, Champion>> {
    let mut out = BTreeMap::new();
    for target in Target::ALL {
        out.insert(target, registry.champion(target).await?);
    }
    Ok(out)
}
