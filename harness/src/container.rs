//! `--target container=IMAGE`: the serving image itself, run by the local
//! Docker engine through testcontainers. The image is never pulled: it must
//! already be on the machine (`cargo xtask image`).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use testcontainers::bollard::models::PortBinding;
use testcontainers::bollard::query_parameters::StatsOptionsBuilder;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The port the image's server listens on inside the container.
const PORT: u16 = 8080;
/// A label on every container the harness starts, to find leftovers.
pub const LABEL: &str = "preflight.harness";

/// CPU and memory given to the container: production-like by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub cpus: f64,
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpus: 1.0,
            memory_bytes: 512 * 1024 * 1024,
        }
    }
}

/// A running container of the serving image, removed when dropped.
pub struct Container {
    inner: ContainerAsync<GenericImage>,
    pub url: String,
    pub image_bytes: Option<u64>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.inner.id())
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `name:tag` split, `latest` where no tag is given.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// Starts the image on `models` (mounted read-only) and returns once the
/// container listens; readiness is the caller's to wait for. Where the
/// container fails, its output is written to `log` first.
pub async fn start(
    image: &str,
    models: &Path,
    limits: Limits,
    log: &Path,
    repository_token: &str,
) -> Result<Container, String> {
    let docker = testcontainers::core::client::docker_client_instance()
        .await
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    let inspected = docker.inspect_image(image).await.map_err(|e| {
        format!(
            "image {image} is not on this machine ({e}); build it with `cargo \
            xtask image` (nothing is pulled)"
        )
    })?;
    let models = std::fs::canonicalize(models).map_err(|e| format!("{}: {e}", models.display()))?;
    let (name, tag) = split_image(image);
    let (cpus, memory) = (limits.cpus, limits.memory_bytes);
    let request = GenericImage::new(name, tag)
        .with_exposed_port(PORT.tcp())
        .with_cmd([
            "--models",
            "/models",
            "--addr",
            "0.0.0.0:8080",
            "--log-format",
            "json",
        ])
        .with_mount(
            Mount::bind_mount(models.display().to_string(), "/models")
                .with_access_mode(AccessMode::ReadOnly),
        )
        .with_label(LABEL, "1")
        .with_env_var(crate::target::REPOSITORY_TOKEN, repository_token)
        .with_startup_timeout(Duration::from_secs(60))
        .with_host_config_modifier(move |host| {
            // Published on the loopback interface only, on a port the engine
            // picks: the server under test is nobody else's to reach.
            host.publish_all_ports = Some(false);
            let loopback = PortBinding {
                host_ip: Some("127.0.0.1".to_owned()),
                host_port: Some(String::new()),
            };
            let published = (format!("{PORT}/tcp"), Some(vec![loopback]));
            host.port_bindings = Some(std::collections::HashMap::from([published]));
            host.nano_cpus = Some((cpus * 1e9) as i64);
            host.memory = Some(memory as i64);
            host.memory_swap = Some(memory as i64);
        });
    let inner = request
        .start()
        .await
        .map_err(|e| format!("container of {image} did not start: {e}"))?;
    let image_bytes = inspected.size.and_then(|s| u64::try_from(s).ok());
    match inner.get_host_port_ipv4(PORT.tcp()).await {
        Ok(port) => Ok(Container {
            inner,
            url: format!("http://127.0.0.1:{port}"),
            image_bytes,
        }),
        // An exited container has no port: say so, and keep what it printed.
        Err(e) => {
            let container = Container {
                inner,
                url: String::new(),
                image_bytes,
            };
            let _ = container.save_log(log).await;
            container.remove().await;
            Err(format!(
                "the container of {image} exited at start ({e}); its log: {}",
                log.display()
            ))
        }
    }
}

impl Container {
    /// Whether the container is still running (false once it has exited).
    pub async fn running(&self) -> bool {
        self.inner.is_running().await.unwrap_or(false)
    }

    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// Writes the container's standard output and error to `path`.
    pub async fn save_log(&self, path: &Path) -> Result<(), String> {
        let mut log = self.inner.stdout_to_vec().await.unwrap_or_default();
        log.extend(self.inner.stderr_to_vec().await.unwrap_or_default());
        tokio::fs::write(path, log)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Stops and removes the container now.
    pub async fn remove(self) {
        let _ = self.inner.rm().await;
    }
}

/// Waits until `ready` answers, or the container exits, or `limit` passes.
pub async fn wait<F: std::future::Future<Output = bool>>(
    container: &Container,
    limit: Duration,
    mut ready: impl FnMut() -> F,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if ready().await {
            return Ok(());
        }
        if !container.running().await {
            return Err("the container exited before it was ready".to_owned());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the container was not ready within {} s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Memory in use by a container, as `docker stats` counts it (usage less
/// inactive file cache).
pub async fn memory_of(id: &str) -> Option<u64> {
    let docker = testcontainers::core::client::docker_client_instance()
        .await
        .ok()?;
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stats = Box::pin(docker.stats(id, Some(options)));
    let memory = stats.next().await?.ok()?.memory_stats?;
    let inactive = memory
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    Some(memory.usage?.saturating_sub(inactive))
}
