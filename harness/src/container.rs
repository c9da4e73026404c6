//! `--target container=IMAGE`: the serving image itself, run by the local
//! Docker engine through testcontainers. The image is never pulled: it must
//! already be on the machine (`cargo xtask image`).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use testcontainers::bollard::models::PortBinding;
use testcontainers::bollard::query_parameters::StatsOptionsBuilder;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The port the image's server listens on inside the container.
const PORT: u16 = 8080;
/// The port of its gRPC service, as the image's own command has it.
const GRPC_PORT: u16 = 8081;
/// How long the container's own address is tried before the published
/// port is taken instead.
const ROUTE_PROBE: Duration = Duration::from_secs(2);
/// Set to `1`, the container is reached at its published port even where
/// its own address is routed: where a firewall drops what it routes, and
/// to measure what Docker's proxy costs (benches/README.md).
pub const PUBLISHED_ONLY: &str = "PREFLIGHT_CONTAINER_PUBLISHED";
/// The user the image runs as (`Dockerfile`, `USER`).
const IMAGE_UID: u32 = 10001;
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
    /// The gRPC service's `HOST:PORT`, reached as `url` is.
    pub grpc: String,
    /// How `url` reaches the container.
    pub reached: Reached,
    pub image_bytes: Option<u64>,
}

/// How the harness reaches the container's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// At the container's own address on its bridge network: the requests
    /// go to the server and nothing else, as a client in the cluster's
    /// network would send them.
    Directly,
    /// Through the port the engine published on the loopback interface,
    /// where the container's own address cannot be reached (Docker Desktop,
    /// a rootless engine, a harness inside a container of its own): Docker's
    /// userland proxy carries every request.
    Published,
}

/// The container's own address on its bridge network, where this machine
/// routes to it; `None` elsewhere. A refused connection is a route: the
/// server is not listening yet, but the container's kernel answered.
async fn own_address(container: &ContainerAsync<GenericImage>) -> Option<SocketAddr> {
    let published = std::env::var(PUBLISHED_ONLY).is_ok_and(|v| v == "1");
    if published || !cfg!(target_os = "linux") {
        return None;
    }
    // The engine's own word: testcontainers' bridge lookup reads the
    // network by the container's mode, which is `default`, not a network.
    let docker = testcontainers::core::client::docker_client_instance()
        .await
        .ok()?;
    let inspected = docker.inspect_container(container.id(), None).await.ok()?;
    let networks = inspected.network_settings?.networks?;
    let ip = networks
        .values()
        .filter_map(|n| n.ip_address.as_deref()?.parse::<IpAddr>().ok())
        .next()?;
    let address = SocketAddr::new(ip, PORT);
    let attempt = tokio::time::timeout(ROUTE_PROBE, tokio::net::TcpStream::connect(address)).await;
    match attempt {
        Ok(Ok(_)) => Some(address),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(address),
        _ => None,
    }
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
    readable_in_the_image(&models)?;
    let (name, tag) = split_image(image);
    let (cpus, memory) = (limits.cpus, limits.memory_bytes);
    let request = GenericImage::new(name, tag)
        .with_exposed_port(PORT.tcp())
        .with_exposed_port(GRPC_PORT.tcp())
        .with_cmd([
            "--models",
            "/models",
            "--addr",
            "0.0.0.0:8080",
            "--grpc-addr",
            "0.0.0.0:8081",
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
            let published = |port: u16| (format!("{port}/tcp"), Some(vec![loopback.clone()]));
            let ports = [published(PORT), published(GRPC_PORT)];
            host.port_bindings = Some(std::collections::HashMap::from(ports));
            host.nano_cpus = Some((cpus * 1e9) as i64);
            host.memory = Some(memory as i64);
            host.memory_swap = Some(memory as i64);
        });
    let inner = request
        .start()
        .await
        .map_err(|e| format!("container of {image} did not start: {e}"))?;
    let image_bytes = inspected.size.and_then(|s| u64::try_from(s).ok());
    let ports = (
        inner.get_host_port_ipv4(PORT.tcp()).await,
        inner.get_host_port_ipv4(GRPC_PORT.tcp()).await,
    );
    match ports {
        (Ok(port), Ok(grpc_port)) => {
            let (url, grpc, reached) = match own_address(&inner).await {
                Some(address) => (
                    format!("http://{address}"),
                    SocketAddr::new(address.ip(), GRPC_PORT).to_string(),
                    Reached::Directly,
                ),
                None => (
                    format!("http://127.0.0.1:{port}"),
                    format!("127.0.0.1:{grpc_port}"),
                    Reached::Published,
                ),
            };
            Ok(Container {
                inner,
                url,
                grpc,
                reached,
                image_bytes,
            })
        }
        // An exited container has no port: say so, and keep what it printed.
        (Err(e), _) | (_, Err(e)) => {
            let container = Container {
                inner,
                url: String::new(),
                grpc: String::new(),
                reached: Reached::Published,
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
            return Err(format!(
                "the container exited before it was ready{}",
                exit_cause(container.id()).await
            ));
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

/// Why the engine says an exited container stopped, as a clause: killed
/// for lack of memory (with its limit), or its exit code; empty when the
/// engine does not say.
async fn exit_cause(id: &str) -> String {
    let Ok(docker) = testcontainers::core::client::docker_client_instance().await else {
        return String::new();
    };
    let Ok(inspected) = docker.inspect_container(id, None).await else {
        return String::new();
    };
    let state = inspected.state.unwrap_or_default();
    let limit = inspected.host_config.and_then(|h| h.memory).unwrap_or(0);
    match (state.oom_killed, state.exit_code) {
        (Some(true), _) if limit > 0 => format!(
            ": the engine killed it for lack of memory, over its limit of {} MiB (--memory-mib)",
            limit / (1024 * 1024)
        ),
        (Some(true), _) => ": the engine killed it for lack of memory".to_owned(),
        (_, Some(code)) => format!(" (exit code {code})"),
        _ => String::new(),
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

/// Nothing when the image's user can read every folder and file of
/// `models`; else the first it cannot, named, with the command that fixes
/// it. The server would otherwise never become ready, and say why only in
/// its own log.
pub(crate) fn readable_in_the_image(models: &Path) -> Result<(), String> {
    let Some((path, mode)) = unreadable(models) else {
        return Ok(());
    };
    Err(format!(
        "{}: the serving image's user (uid {IMAGE_UID}) cannot read it (mode {:o}); make the \
         repository readable by others: chmod -R o+rX {}",
        path.display(),
        mode & 0o7777,
        models.display()
    ))
}

/// The first folder or file under `dir`, itself included, that neither its
/// mode for others nor its owner lets the image's user read, with its mode.
fn unreadable(dir: &Path) -> Option<(PathBuf, u32)> {
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let owner = meta.uid() == IMAGE_UID;
        let needs = if meta.is_dir() { 0o5 } else { 0o4 };
        let granted = if owner { (mode >> 6) & 0o7 } else { mode & 0o7 };
        if granted & needs != needs {
            return Some((path, mode));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            pending.extend(entries.filter_map(|e| Some(e.ok()?.path())));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_the_image_cannot_read_is_named_with_its_fix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let version = tmp.path().join("m/1");
        std::fs::create_dir_all(&version).expect("mkdir");
        std::fs::write(version.join("manifest.toml"), "x").expect("write");
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        for dir in [tmp.path(), &tmp.path().join("m"), &version] {
            set(dir, 0o755);
        }
        set(&version.join("manifest.toml"), 0o644);
        assert_eq!(readable_in_the_image(tmp.path()), Ok(()));

        set(&tmp.path().join("m"), 0o700);
        let why = readable_in_the_image(tmp.path()).expect_err("a 0700 folder");
        assert!(
            why.contains("/m: the serving image's user (uid 10001) cannot read it (mode 700)"),
            "{why}"
        );
        assert!(why.contains("chmod -R o+rX"), "{why}");

        set(&tmp.path().join("m"), 0o755);
        set(&version.join("manifest.toml"), 0o600);
        let why = readable_in_the_image(tmp.path()).expect_err("a 0600 file");
        assert!(why.contains("manifest.toml"), "{why}");
    }
}
