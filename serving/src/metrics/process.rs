//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, ...), read from Linux's `/proc` at the
//! scrape. Elsewhere, or where a file cannot be read, a figure is left out.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Clock ticks per second of `/proc/<pid>/stat`: `USER_HZ`, 100 on every
/// Linux architecture that matters here.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    threads: Option<u64>,
}

impl Process {
    fn read() -> Self {
        let text = |path: &str| std::fs::read_to_string(path).ok();
        let mut process = Process::default();
        if let Some(stat) = text("/proc/self/stat") {
            let boot = text("/proc/stat").and_then(|s| boot_time(&s));
            process.read_stat(&stat, boot);
        }
        if let Some(status) = text("/proc/self/status") {
            let kb = |key: &str| field(&status, key).map(|kb| kb * 1024);
            process.resident_bytes = kb("VmRSS:");
            process.virtual_bytes = kb("VmSize:");
            process.threads = field(&status, "Threads:");
        }
        process.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        process.max_fds = text("/proc/self/limits").and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
        process
    }

    /// CPU time and start time from `/proc/self/stat`; `boot` is the boot
    /// time in seconds since the epoch.
    fn read_stat(&mut self, stat: &str, boot: Option<f64>) {
        // The command name, in parentheses, may hold spaces: count after it.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            return;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14, 15 and 22 of the whole line; the state (3) is first here.
        let number = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (number(14), number(15)) {
            self.cpu_seconds = Some((user + system) / TICKS_PER_SECOND);
        }
        if let (Some(start), Some(boot)) = (number(22), boot) {
            self.start_time_seconds = Some(boot + start / TICKS_PER_SECOND);
        }
    }
}

/// `btime` of `/proc/stat`.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The number after `key` in `/proc/self/status`.
fn field(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

pub(super) fn encode(e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let p = Process::read();
    if let Some(seconds) = p.cpu_seconds {
        e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
    }
    let gauges: [(&str, &str, Option<f64>); 6] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes.map(|b| b as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes.map(|b| b as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds.map(|n| n as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds.map(|n| n as f64),
        ),
        (
            "process_threads",
            "Number of OS threads in the process.",
            p.threads.map(|n| n as f64),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            e.encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_after_the_command_name() {
        // The command name holds a space and a parenthesis.
        let stat = "4242 (pre flight) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    9 0 1000 1000000 200";
        let mut p = Process::default();
        p.read_stat(stat, Some(1_700_000_000.0));
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000.0)
        );
        assert_eq!(field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
        // This process, on Linux: every figure is there.
        if cfg!(target_os = "linux") {
            let p = Process::read();
            assert!(p.resident_bytes.is_some_and(|b| b > 0), "{p:?}");
            assert!(
                p.cpu_seconds.is_some() && p.start_time_seconds.is_some(),
                "{p:?}"
            );
        }
    }
}
