//! OpenCode API objects, deserialised tolerantly: every field has a default
//! and unknown fields are ignored, so a newer OpenCode never breaks us.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// Human-friendly short id such as `neon-nebula`.
    pub slug: String,
    #[serde(rename = "projectID")]
    pub project_id: String,
    pub directory: String,
    #[serde(rename = "parentID")]
    pub parent_id: Option<String>,
    pub title: String,
    pub version: String,
    pub cost: f64,
    pub time: SessionTime,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SessionTime {
    /// Unix milliseconds.
    pub created: f64,
    pub updated: f64,
}

impl Session {
    /// The short id we show: the slug, else the first 8 characters of the id.
    pub fn short_id(&self) -> &str {
        if !self.slug.is_empty() {
            return &self.slug;
        }
        let end = self
            .id
            .char_indices()
            .nth(8)
            .map(|(i, _)| i)
            .unwrap_or(self.id.len());
        &self.id[..end]
    }
}

/// `GET /global/health`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Health {
    pub healthy: bool,
    pub version: String,
}

/// `GET /config/providers`: the providers OpenCode can use, with their
/// models, and the default model of each provider.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Providers {
    pub providers: Vec<Provider>,
    /// Provider id → its default model id.
    pub default: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Provider {
    pub id: String,
    pub name: String,
    /// Model id → model; a map keeps them in a stable order.
    pub models: std::collections::BTreeMap<String, ProviderModel>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProviderModel {
    pub id: String,
    pub name: String,
}
