//! tract-onnx latency probe: one model, one input tensor, warm-ups then timed runs.
//!
//! `tract-bench MODEL.onnx SHAPE INPUT.bin [--runs N] [--warmup N] [--json]`
//! SHAPE like `1,3,384,512`; INPUT.bin holds that many f32 (little-endian), e.g. from
//! `tools/models/make_input.py`. Prints median and p95 (nearest rank) in ms.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: tract-bench MODEL.onnx SHAPE INPUT.bin [--runs N] [--warmup N] [--json]");
    }
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).context("flag needs a value")?.parse().context("bad number"),
            None => Ok(default),
        }
    };
    let runs = flag("--runs", 20)?.max(1);
    let warmup = flag("--warmup", 3)?;
    let json = args.iter().any(|a| a == "--json");
    let shape: Vec<usize> = args[2].split(',').map(|s| s.parse().context("bad shape")).collect::<Result<_>>()?;
    let bytes = std::fs::read(&args[3]).with_context(|| format!("reading {}", args[3]))?;
    let n: usize = shape.iter().product();
    if bytes.len() != n * 4 {
        bail!("{} has {} bytes, shape needs {}", args[3], bytes.len(), n * 4);
    }
    let data: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let input: Tensor = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data)?.into();

    let t0 = Instant::now();
    let model = tract_onnx::onnx()
        .model_for_path(&args[1])?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let input: TValue = input.into();
    for _ in 0..warmup {
        model.run(tvec!(input.clone()))?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.run(tvec!(input.clone()))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = if runs % 2 == 1 { times[runs / 2] } else { (times[runs / 2 - 1] + times[runs / 2]) / 2.0 };
    let p95 = times[((0.95 * runs as f64).ceil() as usize).clamp(1, runs) - 1];
    let model_name = std::path::Path::new(&args[1]).file_stem().and_then(|s| s.to_str()).unwrap_or("?");
    if json {
        println!(
            "{{\"bench\": \"tract\", \"runtime\": \"tract-onnx 0.23\", \"model\": \"{model_name}\", \"input\": {shape:?}, \"threads\": 1, \"warmup\": {warmup}, \"runs\": {runs}, \"median_ms\": {median:.3}, \"p95_ms\": {p95:.3}, \"min_ms\": {:.3}, \"load_ms\": {load_ms:.1}}}",
            times[0]
        );
    } else {
        println!("tract-onnx 0.23  {model_name:16} {shape:?}  median {median:.1} ms  p95 {p95:.1} ms  (load {load_ms:.0} ms)");
    }
    Ok(())
}
