//! Routing a model's default requests: to its default version, with a
//! share sent to a candidate (canary) or computed beside the answer
//! (shadow).

use std::sync::Arc;

use super::{ModelSlot, Models, Registry, RouteRequest, Routed, join};
use crate::error::ApiError;
use crate::rollout::{Mode, Route, Shadowing};

impl Registry {
    /// Where a request for `name` without a version goes: the default
    /// version, or the route's candidate for its share.
    pub fn route_default(&self, name: &str) -> Result<Routed, ApiError> {
        let slot = self.slot(name)?;
        let default = slot
            .versions
            .get(&slot.default_version)
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "model '{name}' version {} is not loaded",
                    slot.default_version
                ))
            })?;
        let routed = |served| Routed {
            served,
            shadow: None,
        };
        let Some(route) = &slot.route else {
            return Ok(routed(default));
        };
        let Some(candidate) = slot
            .versions
            .get(&route.candidate)
            .filter(|_| route.takes())
        else {
            return Ok(routed(default));
        };
        Ok(match route.mode {
            Mode::Canary => routed(Arc::clone(candidate)),
            Mode::Shadow => Routed {
                served: default,
                shadow: Some(Shadowing {
                    candidate: Arc::clone(candidate),
                    route: Arc::clone(route),
                }),
            },
        })
    }

    /// Sets or ends `name`'s route; a version must be loaded to be a
    /// candidate. Atomic: a request sees the old route or the new one.
    pub fn set_route(&self, name: &str, request: RouteRequest) -> Result<(), ApiError> {
        self.update(|models| Self::route_in(models, name, request))
    }

    fn route_in(models: &mut Models, name: &str, request: RouteRequest) -> Result<(), ApiError> {
        let slot = models
            .get(name)
            .ok_or_else(|| ApiError::NotFound(format!("model '{name}' is not loaded")))?;
        let route = match request {
            RouteRequest::Off => None,
            RouteRequest::To {
                version,
                mode,
                percent,
            } => {
                if !slot.versions.contains_key(&version) {
                    let loaded: Vec<u64> = slot.versions.keys().copied().collect();
                    return Err(ApiError::NotFound(format!(
                        "model '{name}' has no version {version} loaded to route to (loaded: {})",
                        join(&loaded)
                    )));
                }
                Some(Arc::new(Route::new(version, mode, percent)))
            }
        };
        let next = ModelSlot {
            versions: slot.versions.clone(),
            default_version: slot.default_version,
            route,
        };
        models.insert(name.to_owned(), Arc::new(next));
        Ok(())
    }

    /// Every model's route, with the version it serves by default.
    pub fn routes(&self) -> Vec<(String, u64, Arc<Route>)> {
        let models = self.models.load();
        models
            .iter()
            .filter_map(|(name, slot)| {
                let route = slot.route.as_ref()?;
                Some((name.clone(), slot.default_version, Arc::clone(route)))
            })
            .collect()
    }
}
