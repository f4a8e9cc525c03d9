//! Inference backends behind one small trait: tract (pure Rust, always built) and
//! onnxruntime (`ort` feature, see [`crate::ort_backend`]).

use crate::decode::Output;
use crate::error::{Result, VisionError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

/// One inference runtime holding one model.
pub trait Backend: Send + Sync {
    /// "tract" or "onnxruntime".
    fn name(&self) -> &'static str;
    fn version(&self) -> String;
    fn threads(&self) -> usize;
    /// Runs the model on one input tensor (f32, `shape` = 4 dims); outputs in model order.
    fn run(&self, shape: [usize; 4], data: &[f32]) -> Result<Vec<Output>>;
}

/// Input dims of an ONNX model (None = symbolic), read with tract's parser.
pub fn input_dims(model: &InferenceModel) -> Result<Vec<Option<usize>>> {
    let fact = model.input_fact(0).map_err(|e| VisionError::Model(format!("no input: {e}")))?;
    Ok(fact.shape.dims().map(|d| d.concretize().and_then(|t| t.to_usize().ok())).collect())
}

/// Parses ONNX bytes (no optimisation yet).
pub fn parse_onnx(bytes: &[u8]) -> Result<InferenceModel> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| VisionError::Model(format!("not a loadable ONNX model: {e:#}")))?;
    if model.inputs.len() != 1 {
        return Err(VisionError::Model(format!("expected one input, found {}", model.inputs.len())));
    }
    Ok(model)
}

type Plan = Arc<TypedRunnableModel>;

/// The tract release this crate is built against (Cargo.toml pins 0.23).
pub const TRACT_VERSION: &str = "0.23";

/// tract: the model optimised once per input shape, plans cached and shared by threads.
pub struct TractBackend {
    model: InferenceModel,
    plans: Mutex<HashMap<[usize; 4], Plan>>,
}

impl TractBackend {
    pub fn new(model: InferenceModel) -> TractBackend {
        TractBackend { model, plans: Mutex::new(HashMap::new()) }
    }

    /// Optimised plan for one input shape (built on first use, then cached).
    pub fn plan(&self, shape: [usize; 4]) -> Result<Plan> {
        if let Some(p) = self.lock().get(&shape) {
            return Ok(p.clone());
        }
        // Built outside the lock so other shapes are not held up.
        let plan = self
            .typed(shape)?
            .into_runnable()
            .map_err(|e| VisionError::Model(format!("tract cannot plan the model: {e:#}")))?;
        self.lock().insert(shape, plan.clone());
        Ok(plan)
    }

    /// The optimised typed model for one input shape (also used for profiling).
    pub fn typed(&self, shape: [usize; 4]) -> Result<TypedModel> {
        let mut m = self.model.clone();
        // Declared output shapes may pin the graph to its export size: let tract infer them.
        for i in 0..m.outputs.len() {
            m.set_output_fact(i, InferenceFact::default()).map_err(|e| VisionError::Model(format!("{e:#}")))?;
        }
        m.with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .map_err(|e| VisionError::Model(format!("tract cannot run the model at input {shape:?}: {e:#}")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[usize; 4], Plan>> {
        // A poisoned cache only means a panic elsewhere mid-insert; the map is still valid.
        self.plans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }
    fn version(&self) -> String {
        TRACT_VERSION.to_string()
    }
    fn threads(&self) -> usize {
        1
    }
    fn run(&self, shape: [usize; 4], data: &[f32]) -> Result<Vec<Output>> {
        let plan = self.plan(shape)?;
        let input = Tensor::from_shape(&shape, data).map_err(|e| VisionError::Inference(format!("{e:#}")))?;
        let outs = plan.run(tvec!(input.into_tvalue())).map_err(|e| VisionError::Inference(format!("tract: {e:#}")))?;
        let names = &plan.model().outputs;
        outs.into_iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.cast_to::<f32>().map_err(|e| VisionError::Inference(format!("output {i}: {e:#}")))?;
                let data: Vec<f32> = t
                    .to_plain_array_view::<f32>()
                    .map_err(|e| VisionError::Inference(format!("output {i}: {e:#}")))?
                    .iter()
                    .copied()
                    .collect();
                let name = names.get(i).map(|o| plan.model().node(o.node).name.clone()).unwrap_or_default();
                Ok(Output { name, shape: t.shape().to_vec(), data })
            })
            .collect()
    }
}

/// Per-op-type time of tract on one input shape: `(op name, ms per run, node count)`,
/// most expensive first. Uses tract's own evaluation loop with a timer around each node.
pub fn profile_tract(bytes: &[u8], shape: [usize; 4], runs: usize) -> Result<Vec<(String, f64, usize)>> {
    use std::time::Instant;
    let tb = TractBackend::new(parse_onnx(bytes)?);
    let plan = tb.plan(shape)?;
    let err = |e: TractError| VisionError::Inference(format!("{e:#}"));
    let mut state = tract_onnx::tract_core::plan::SimpleState::new(&plan).map_err(err)?;
    let input = Tensor::zero::<f32>(&shape).map_err(err)?;
    let mut acc: HashMap<String, (f64, std::collections::HashSet<usize>)> = HashMap::new();
    for run in 0..=runs {
        state
            .run_plan_with_eval(tvec!(input.clone().into_tvalue()), |ctx, st, node, inputs| {
                let t = Instant::now();
                let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                if run > 0 {
                    let e = acc.entry(node.op().name().to_string()).or_default();
                    e.0 += t.elapsed().as_secs_f64() * 1000.0;
                    e.1.insert(node.id);
                }
                r
            })
            .map_err(err)?;
    }
    let mut v: Vec<(String, f64, usize)> =
        acc.into_iter().map(|(k, (ms, nodes))| (k, ms / runs.max(1) as f64, nodes.len())).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(v)
}
