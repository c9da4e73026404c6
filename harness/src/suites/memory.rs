//! What one model costs the endpoint in memory: the server's heap in use
//! (`preflight_process_heap_bytes`, the C allocator's figure, ONNX Runtime's
//! sessions and arenas included) after the model is unloaded, and again
//! after it is loaded and has served its samples one batch at a time and one
//! large batch. Only on an endpoint this run started: preflight does not
//! unload models on a server it does not own.

use preflight_bundle::Record;

use super::{CHUNK, ModelUnderTest, rows};
use crate::client::Unreachable;
use crate::report::Skip;

/// The server's gauge of the heap in use.
const METRIC: &str = "preflight_process_heap_bytes";
/// The server's resident memory, read from the same scrape.
const RESIDENT: &str = "process_resident_memory_bytes";
/// Rows of the large batch served before the second reading.
const LARGE_BATCH: usize = 1000;
/// How far apart the heap's growth and the resident memory's may be before
/// the larger is judged: the allocator keeps and reuses whole pages, so the
/// resident memory moves in steps of its own around the heap's bytes.
const DISAGREE: f64 = 2.0;
/// Below this, a resident growth above the heap's is the allocator's pages,
/// thread stacks and the like, not the model: 64 MiB. On the fixtures it
/// moved by -6.8 to +22.9 MB while the heap grew by 1.3 to 5.0 MB.
const RESIDENT_SLACK: i64 = 64 << 20;

/// Why the memory of a model has no figure.
pub(super) enum Unmeasured {
    /// The endpoint cannot tell, or may not be asked.
    Skipped(Skip, String),
    /// The endpoint refused to unload, load or serve the model, or the
    /// readings cannot be true.
    Failed(String),
}

/// One scrape of the endpoint's memory.
#[derive(Debug, Clone, Copy)]
struct Reading {
    heap: u64,
    resident: Option<u64>,
}

/// What a model costs, and how that was read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cost {
    /// The figure judged.
    pub bytes: u64,
    /// The heap's growth across the unload and the load.
    pub heap: i64,
    /// The resident memory's growth across the same steps.
    pub resident: Option<i64>,
}

impl Cost {
    /// From the readings with the model unloaded and loaded: the heap's
    /// growth, or the resident memory's where that is over `DISAGREE` times
    /// larger (and beyond the allocator's slack); an error when the heap did
    /// not grow, for a loaded model cannot cost nothing.
    fn of(empty: Reading, loaded: Reading) -> Result<Self, String> {
        let growth = |a: u64, b: u64| {
            i64::try_from(b).unwrap_or(i64::MAX) - i64::try_from(a).unwrap_or(i64::MAX)
        };
        let heap = growth(empty.heap, loaded.heap);
        let resident = empty
            .resident
            .zip(loaded.resident)
            .map(|(a, b)| growth(a, b));
        if heap <= 0 {
            return Err(format!(
                "a broken measurement: the heap in use read {} with the model unloaded and {} \
                 with it loaded and served{}; a loaded model cannot cost {} bytes",
                signed(empty.heap as i64),
                signed(loaded.heap as i64),
                resident
                    .map(|r| format!(" (resident memory {})", signed(r)))
                    .unwrap_or_default(),
                heap
            ));
        }
        let judged = match resident {
            Some(r) if r as f64 > DISAGREE * heap as f64 && r - heap > RESIDENT_SLACK => r,
            _ => heap,
        };
        Ok(Self {
            bytes: judged as u64,
            heap,
            resident,
        })
    }

    /// Whether the resident memory's growth is the figure judged.
    pub(super) fn resident_judged(&self) -> bool {
        self.resident
            .is_some_and(|r| r as u64 == self.bytes && r != self.heap)
    }

    /// How the figure was read, for the check's message.
    pub(super) fn how(&self) -> String {
        match self.resident {
            Some(r) if self.resident_judged() => format!(
                "the resident memory grew {}, over {DISAGREE}× the heap's {}: the larger judged",
                signed(r),
                signed(self.heap)
            ),
            Some(r) => format!("heap in use; resident memory {}", signed(r)),
            None => "heap in use".to_owned(),
        }
    }
}

/// `+6.37 MB`: a growth, signed.
fn signed(bytes: i64) -> String {
    format!("{:+.2} MB", bytes as f64 / 1e6)
}

/// What the model costs, with every version the endpoint loads of it.
pub(super) async fn measure(
    model: &ModelUnderTest,
) -> Result<Result<Cost, Unmeasured>, Unreachable> {
    if !model.owns_endpoint {
        return Ok(Err(Unmeasured::Skipped(
            Skip::Endpoint,
            "the endpoint was not started by this run, and preflight does not unload models on \
            a server it does not own"
                .to_owned(),
        )));
    }
    if read(model).await?.is_none() {
        return Ok(Err(Unmeasured::Skipped(
            Skip::Endpoint,
            format!("the endpoint's /metrics has no {METRIC}"),
        )));
    }
    if let Err(why) = repository(model, "unload").await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    let empty = read(model).await?;
    if let Err(why) = repository(model, "load").await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    if let Err(why) = serve(model).await? {
        return Ok(Err(Unmeasured::Failed(why)));
    }
    let loaded = read(model).await?;
    Ok(match empty.zip(loaded) {
        Some((empty, loaded)) => Cost::of(empty, loaded).map_err(Unmeasured::Failed),
        None => Err(Unmeasured::Failed(format!(
            "/metrics stopped giving {METRIC}"
        ))),
    })
}

/// `POST /v2/repository/models/{model}/{action}`, or what it answered
/// instead of 200.
async fn repository(
    model: &ModelUnderTest,
    action: &str,
) -> Result<Result<(), String>, Unreachable> {
    let path = format!("/v2/repository/models/{}/{action}", model.bundle.name());
    let (status, body) = model.client.post_empty(&path).await?;
    Ok(if status == 200 {
        Ok(())
    } else {
        Err(format!("{action} answered {status}: {body}"))
    })
}

/// Every sample, `CHUNK` rows at a time, then one large batch.
async fn serve(model: &ModelUnderTest) -> Result<Result<(), String>, Unreachable> {
    let manifest = model.bundle.manifest();
    let Some(samples) = model.samples.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(Ok(()));
    };
    let all: Vec<&Record> = samples.iter().collect();
    let large: Vec<&Record> = samples.iter().cycle().take(LARGE_BATCH).collect();
    for batch in all.chunks(CHUNK).chain([large.as_slice()]) {
        let answer = model.client.infer(manifest, &rows(batch), None).await?;
        if !answer.ok() {
            let what = format!("a batch of {} samples", batch.len());
            return Ok(Err(format!("{what} answered {}", answer.describe())));
        }
    }
    Ok(Ok(()))
}

/// The heap gauge and the resident memory, where `/metrics` gives the
/// first.
async fn read(model: &ModelUnderTest) -> Result<Option<Reading>, Unreachable> {
    let (status, text) = model.client.get_text("/metrics").await?;
    if status != 200 {
        return Ok(None);
    }
    let value = |metric: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let value = rest.trim_start_matches("{}").trim();
            value.parse::<f64>().ok().map(|v| v as u64)
        })
    };
    Ok(value(METRIC).map(|heap| Reading {
        heap,
        resident: value(RESIDENT),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(heap: u64, resident: u64) -> Reading {
        Reading {
            heap,
            resident: Some(resident),
        }
    }

    #[test]
    fn a_heap_that_did_not_grow_is_a_broken_measurement_with_its_readings() {
        let why = Cost::of(
            reading(120_000_000, 200_000_000),
            reading(92_000_000, 237_000_000),
        )
        .expect_err("a loaded model cannot cost nothing");
        assert!(why.contains("a broken measurement"), "{why}");
        assert!(
            why.contains("+120.00 MB") && why.contains("+92.00 MB"),
            "{why}"
        );
        assert!(why.contains("resident memory +37.00 MB"), "{why}");
        assert!(Cost::of(reading(5, 0), reading(5, 0)).is_err());
    }

    #[test]
    fn the_larger_growth_is_judged_only_when_far_apart() {
        let mb = 1_000_000;
        // Close: the heap's count is the figure.
        let cost = Cost::of(reading(90 * mb, 100 * mb), reading(100 * mb, 115 * mb)).expect("grew");
        assert_eq!((cost.bytes, cost.resident_judged()), (10 * mb, false));
        // Over 2× but within the allocator's slack: still the heap's.
        let cost = Cost::of(reading(90 * mb, 100 * mb), reading(92 * mb, 110 * mb)).expect("grew");
        assert_eq!((cost.bytes, cost.resident_judged()), (2 * mb, false));
        // Far apart and large: the resident memory's, and the message says so.
        let cost = Cost::of(reading(90 * mb, 92 * mb), reading(95 * mb, 237 * mb)).expect("grew");
        assert_eq!((cost.bytes, cost.resident_judged()), (145 * mb, true));
        assert!(cost.how().contains("the larger judged"), "{}", cost.how());
    }
}
