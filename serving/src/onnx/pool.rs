//! Each model version's sessions.
//!
//! `Session::run` takes `&mut self`, so a session runs one batch at a time.
//! Each model version keeps a small pool of sessions: one made at load, more
//! (up to `sessions_per_model`) made on a background thread only when
//! requests to that model overlap. Different models never wait for each
//! other, a hot model can use every core, and a repository of hundreds of
//! cold models costs one session each.
//!
//! Threads are numbered as they first run a model, and each tries the
//! slots from its own number on: under steady load each core keeps running
//! the same session and finds that session's trees still in its cache,
//! rather than the sessions trading places between the cores.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ort::session::Session;
use preflight_ort::SessionError;

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct OrtOptions {
    pub sessions_per_model: usize,
    pub intra_op_threads: usize,
}

impl Default for OrtOptions {
    fn default() -> Self {
        Self {
            sessions_per_model: 2,
            intra_op_threads: 1,
        }
    }
}
pub(super) struct Pool {
    path: PathBuf,
    options: OrtOptions,
    /// Slot 0 always holds a session; the others are filled on demand.
    slots: Arc<Vec<Mutex<Option<Session>>>>,
    /// Set while a thread is making a new session.
    growing: Arc<AtomicBool>,
}

static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number among the threads that ran a model.
    static NUMBER: usize = THREADS.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a session leaves the session itself intact.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// A pool of one session on the ONNX file at `path`, lean (see
    /// `preflight_ort::lean_session`); the error says why ONNX Runtime cannot
    /// load it.
    pub(super) fn new(path: PathBuf, options: OrtOptions) -> Result<Self, SessionError> {
        let session = preflight_ort::lean_session(&path, options.intra_op_threads)?;
        let mut slots: Vec<Mutex<Option<Session>>> = (0..options.sessions_per_model.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        slots[0] = Mutex::new(Some(session));
        Ok(Self {
            path,
            options,
            slots: Arc::new(slots),
            growing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The session made at load, which always exists.
    pub(super) fn first(&self) -> MutexGuard<'_, Option<Session>> {
        lock(&self.slots[0])
    }

    /// A free session: an idle one, from this thread's number on, else the
    /// first, waiting for it. When every session is busy and the pool may
    /// grow, a new session is made on another thread: making one takes tens
    /// of milliseconds, which must not land on a request.
    pub(super) fn session(&self) -> MutexGuard<'_, Option<Session>> {
        let n = self.slots.len();
        let first = NUMBER.with(|k| *k) % n;
        for slot in self.slots[first..].iter().chain(&self.slots[..first]) {
            if let Ok(guard) = slot.try_lock()
                && guard.is_some()
            {
                return guard;
            }
        }
        let can_grow = self.slots[1..]
            .iter()
            .any(|s| s.try_lock().is_ok_and(|g| g.is_none()));
        if can_grow && !self.growing.swap(true, Ordering::AcqRel) {
            self.grow();
        }
        self.first()
    }

    /// Fills an empty slot on a thread of its own.
    fn grow(&self) {
        let (slots, growing, path, threads) = (
            Arc::clone(&self.slots),
            Arc::clone(&self.growing),
            self.path.clone(),
            self.options.intra_op_threads,
        );
        std::thread::spawn(move || {
            if let Some(mut empty) = slots[1..].iter().map(|s| lock(s)).find(|g| g.is_none()) {
                match preflight_ort::lean_session(&path, threads) {
                    Ok(session) => *empty = Some(session),
                    Err(error) => {
                        let path = path.display();
                        tracing::warn!(%path, %error, "could not add a session")
                    }
                }
            }
            growing.store(false, Ordering::Release);
        });
    }
}
