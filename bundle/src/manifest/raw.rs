//! The raw shape of `manifest.toml`. Tables are `Spanned` so that a rule
//! broken after parsing can still be reported at its line.

use serde::Deserialize;
use toml::Spanned;

use super::{Feature, ModelInfo, Producer, Runtime};
use crate::contract::{LatencyBudget, Monotonic, QualityBudget, SizeBudget, Tolerance};

#[derive(Deserialize)]
pub(super) struct RawManifest {
    pub(super) model: Spanned<ModelInfo>,
    #[serde(default)]
    pub(super) producer: Producer,
    pub(super) runtime: Spanned<Runtime>,
    pub(super) inputs: Vec<Spanned<Feature>>,
    pub(super) outputs: Vec<Spanned<Feature>>,
    #[serde(default)]
    pub(super) contract: Option<Spanned<RawContract>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContract {
    pub(super) parity: Option<Spanned<Tolerance>>,
    pub(super) latency: Option<Spanned<LatencyBudget>>,
    pub(super) size: Option<Spanned<SizeBudget>>,
    pub(super) quality: Option<Spanned<Budgets>>,
    pub(super) fallback: Option<Spanned<QualityBudget>>,
    #[serde(default)]
    pub(super) monotonic: Vec<Spanned<Monotonic>>,
    #[serde(default)]
    pub(super) breaking: Vec<String>,
}

/// `quality = { ... }` or `quality = [{ ... }, { ... }]`, read by what the
/// value is, so that a budget's own error (an unknown key) is the one told.
pub(super) struct Budgets(Vec<QualityBudget>);

impl Budgets {
    pub(super) fn into_vec(self) -> Vec<QualityBudget> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Budgets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Budgets;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quality budget or a list of them")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Budgets, A::Error> {
                let one =
                    QualityBudget::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Budgets(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Budgets, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Budgets)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
