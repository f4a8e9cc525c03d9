//! onnxruntime backend (cargo feature `ort`): the library is loaded at run time
//! (`load-dynamic`) after [`crate::ortlib`] has checked it.

use crate::backend::Backend;
use crate::decode::Output;
use crate::error::{Result, VisionError};
use crate::ortlib::{self, FoundLib};
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::TensorRef;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The process-wide onnxruntime: `ort` can load one library per process.
static ENV: OnceLock<(ort::environment::Environment, FoundLib)> = OnceLock::new();

/// Finds, checks and initialises onnxruntime once; later calls reuse it.
pub fn environment(explicit: Option<&Path>) -> Result<&'static (ort::environment::Environment, FoundLib)> {
    if let Some(e) = ENV.get() {
        if let Some(p) = explicit {
            if p != e.1.path {
                // A bad explicit path is still an error, even with a library already loaded.
                ortlib::check(p).map_err(|m| VisionError::OrtUnavailable(format!("tried --onnxruntime ({m})")))?;
                tracing::warn!("onnxruntime already loaded from {}; ignoring {}", e.1.path.display(), p.display());
            }
        }
        return Ok(e);
    }
    let lib = ortlib::find(explicit).map_err(VisionError::OrtUnavailable)?;
    let path = lib.path.clone();
    // `ort` asserts and panics on some bad libraries: keep that from taking the process down.
    let env = std::panic::catch_unwind(|| -> std::result::Result<_, String> {
        ort::init_from(&path).map_err(|e| e.to_string())?.with_name("callsight").build().map_err(|e| e.to_string())
    })
    .map_err(|_| VisionError::OrtUnavailable(format!("{}: onnxruntime initialisation panicked", path.display())))?
    .map_err(|e| VisionError::OrtUnavailable(format!("{}: {e}", path.display())))?;
    tracing::info!(path = %lib.path.display(), version = %lib.version, origin = %lib.origin, "onnxruntime loaded");
    Ok(ENV.get_or_init(|| (env, lib)))
}

/// A pool of sessions on one model (`Session::run` needs `&mut`), each with `threads`
/// intra-op threads.
pub struct OrtBackend {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    threads: usize,
    version: String,
}

impl OrtBackend {
    pub fn new(model: &[u8], explicit: Option<&Path>, threads: usize, sessions: usize) -> Result<OrtBackend> {
        let (env, lib) = environment(explicit)?;
        let err = |e: ort::Error| VisionError::Model(format!("onnxruntime: {e}"));
        let mut pool = Vec::new();
        for _ in 0..sessions.max(1) {
            let s = Session::builder(env)
                .map_err(err)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| err(e.into()))?
                .with_intra_threads(threads.max(1))
                .map_err(|e| err(e.into()))?
                .with_inter_threads(1)
                .map_err(|e| err(e.into()))?
                .commit_from_memory(model)
                .map_err(err)?;
            pool.push(Mutex::new(s));
        }
        Ok(OrtBackend {
            sessions: pool,
            next: AtomicUsize::new(0),
            threads: threads.max(1),
            version: lib.version.clone(),
        })
    }

    fn run_on(session: &mut Session, shape: [usize; 4], data: &[f32]) -> Result<Vec<Output>> {
        let ierr = |e: ort::Error| VisionError::Inference(format!("onnxruntime: {e}"));
        let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let input = TensorRef::from_array_view((shape, data)).map_err(ierr)?;
        let outs = session.run(ort::inputs![input]).map_err(ierr)?;
        let mut v = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            let (shape, data) = outs[i].try_extract_tensor::<f32>().map_err(ierr)?;
            v.push(Output { name, shape: shape.iter().map(|&d| d.max(0) as usize).collect(), data: data.to_vec() });
        }
        Ok(v)
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn threads(&self) -> usize {
        self.threads
    }
    fn run(&self, shape: [usize; 4], data: &[f32]) -> Result<Vec<Output>> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        // A free session if there is one, else wait for ours.
        for k in 0..n {
            if let Ok(mut s) = self.sessions[(start + k) % n].try_lock() {
                return Self::run_on(&mut s, shape, data);
            }
        }
        let mut s = self.sessions[start].lock().unwrap_or_else(|e| e.into_inner());
        Self::run_on(&mut s, shape, data)
    }
}
