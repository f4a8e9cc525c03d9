//! `vision-bench`: detector speed tables (markdown) on this machine.
//!
//! - per backend × detect size × threads: median / p95 of raw inference and of the full
//!   pipeline (640×480 I420 frame in → detections out);
//! - `--concurrency`: K = 1, 2, 4 callers, intra-op threads vs one session per worker;
//! - `--profile`: tract's time per op type.
//!
//! Input: the first frame of test-data/bus.y4m (scripts/fetch-test-data.sh).

use anyhow::{bail, Context};
use callsight_measure::percentile;
use callsight_vision::args::ModelArgs;
use callsight_vision::preprocess::{i420_to_tensor, Letterbox};
use callsight_vision::{BackendChoice, DetectOptions, Detector, DetectorConfig, I420Buffer};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// The model (a bundled one: its raw-inference columns need the bundled pre-processing)
    /// and the onnxruntime library; backends, sizes and threads are swept below.
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, value_delimiter = ',', default_value = "tract,ort")]
    backends: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "320,416,512")]
    sizes: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed runs per row (after 3 warm-ups).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// y4m file whose first frame is the input.
    #[arg(long)]
    y4m: Option<PathBuf>,
    /// Also measure K = 1, 2, 4 concurrent callers (intra-op threads vs sessions).
    #[arg(long)]
    concurrency: bool,
    /// Detect size for the concurrency table.
    #[arg(long, default_value_t = 416)]
    concurrency_size: usize,
    /// Print tract's per-op profile at these sizes (e.g. 416) and exit.
    #[arg(long, value_delimiter = ',')]
    profile: Vec<usize>,
    /// ONNX file to profile instead of the bundled model (e.g. models/centernet.onnx).
    #[arg(long)]
    profile_model: Option<PathBuf>,
}

/// The bundled model measured (its pre-processing feeds the raw-inference columns).
fn model_name(a: &Args) -> anyhow::Result<&str> {
    a.model
        .bundled_name()
        .context("vision-bench measures the bundled models: use --model-name (or --profile-model FILE)")
}

/// (median, p95) in ms.
fn stats(mut v: Vec<f64>) -> (f64, f64) {
    (percentile(&mut v, 50.0).unwrap_or(f64::NAN), percentile(&mut v, 95.0).unwrap_or(f64::NAN))
}

fn load_frame(path: Option<PathBuf>) -> anyhow::Result<I420Buffer> {
    let path = path.unwrap_or_else(|| {
        let dir = std::env::var_os("CALLSIGHT_TEST_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-data"));
        dir.join("bus.y4m")
    });
    let mut y4m = callsight_vision::io::Y4m::open(&path, &Default::default())
        .with_context(|| format!("{}: run scripts/fetch-test-data.sh", path.display()))?;
    let Some(frame) = y4m.next_frame()? else { bail!("{}: no frames", path.display()) };
    Ok(frame)
}

fn config(a: &Args, backend: &str, size: usize, threads: usize, workers: usize) -> anyhow::Result<DetectorConfig> {
    let backend = backend.parse::<BackendChoice>().map_err(anyhow::Error::msg)?;
    Ok(a.model.config(backend, threads, Some(size), workers))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if !a.profile.is_empty() {
        return profile(&a);
    }
    let frame = load_frame(a.y4m.clone())?;
    let opts = DetectOptions::default();
    println!(
        "model {}, input {}x{} I420 frame (bus.y4m), {} runs after 3 warm-ups\n",
        model_name(&a)?,
        frame.width,
        frame.height,
        a.runs
    );
    println!("| backend | version | input | threads | pre-process median ms | raw median ms | raw p95 ms | pipeline median ms | pipeline p95 ms | found |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for backend in &a.backends {
        for &size in &a.sizes {
            for &threads in &a.threads {
                if backend == "tract" && threads > 1 {
                    continue; // tract runs one thread per inference
                }
                let det = Detector::load(&config(&a, backend, size, threads, 1)?)?;
                let info = det.info();
                let (w, h) = det.input_shape(frame.width, frame.height);
                let lb = Letterbox::fit(frame.width, frame.height, w, h);
                let spec = callsight_vision::bundled::bundled(model_name(&a)?).context("model")?.1;
                let mut input = Vec::new();
                i420_to_tensor(&frame.view(), &lb, spec.layout, &spec.norm, &mut input)?;
                for _ in 0..3 {
                    det.infer_raw(w, h, &input)?;
                }
                let mut pre = Vec::new();
                for _ in 0..a.runs {
                    let t = Instant::now();
                    i420_to_tensor(&frame.view(), &lb, spec.layout, &spec.norm, &mut input)?;
                    pre.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let mut raw = Vec::new();
                for _ in 0..a.runs {
                    let t = Instant::now();
                    det.infer_raw(w, h, &input)?;
                    raw.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let mut full = Vec::new();
                let mut found = String::new();
                for _ in 0..a.runs {
                    let t = Instant::now();
                    let r = det.detect_i420(&frame.view(), &opts)?;
                    full.push(t.elapsed().as_secs_f64() * 1000.0);
                    let mut labels: Vec<&str> = r.detections.iter().map(|d| d.label.as_str()).collect();
                    labels.sort();
                    found = labels.join(" ");
                }
                let (pm, _) = stats(pre);
                let (rm, rp) = stats(raw);
                let (fm, fp) = stats(full);
                println!(
                    "| {} | {} | {w}x{h} | {} | {pm:.2} | {rm:.1} | {rp:.1} | {fm:.1} | {fp:.1} | {found} |",
                    info.backend, info.version, info.threads
                );
            }
        }
    }
    if a.concurrency {
        concurrency(&a, &frame)?;
    }
    Ok(())
}

/// K callers detecting on the same frame at once: throughput and per-call latency.
fn concurrency(a: &Args, frame: &I420Buffer) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nconcurrent callers, detect size {}, {cores} cores, {} calls per caller\n", a.concurrency_size, a.runs);
    println!("| backend | arrangement | K callers | frames/s total | latency median ms | latency p95 ms |");
    println!("|---|---|---|---|---|---|");
    for backend in &a.backends {
        let arrangements: Vec<(String, usize, usize)> = if backend == "tract" {
            vec![("shared plan, 1 thread/inference".into(), 1, 1)]
        } else {
            vec![
                (format!("1 session x {cores} intra-op threads"), cores, 1),
                (format!("{cores} sessions x 1 thread"), 1, cores),
            ]
        };
        for (name, threads, workers) in arrangements {
            let det = Arc::new(Detector::load(&config(a, backend, a.concurrency_size, threads, workers)?)?);
            det.detect_i420(&frame.view(), &DetectOptions::default())?;
            for k in [1usize, 2, 4] {
                let t0 = Instant::now();
                let handles: Vec<_> = (0..k)
                    .map(|_| {
                        let det = det.clone();
                        let frame = frame.clone();
                        let runs = a.runs;
                        std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                            let f = frame.view();
                            let mut lat = Vec::new();
                            for _ in 0..runs {
                                let t = Instant::now();
                                det.detect_i420(&f, &DetectOptions::default())?;
                                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            }
                            Ok(lat)
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for h in handles {
                    all.extend(h.join().map_err(|_| anyhow::anyhow!("bench thread panicked"))??);
                }
                let secs = t0.elapsed().as_secs_f64();
                let n = all.len();
                let (m, p) = stats(all);
                println!("| {backend} | {name} | {k} | {:.1} | {m:.1} | {p:.1} |", n as f64 / secs);
            }
        }
    }
    Ok(())
}

fn profile(a: &Args) -> anyhow::Result<()> {
    let (bytes, layout, name): (Vec<u8>, _, String) = match &a.profile_model {
        Some(p) => {
            let b = std::fs::read(p).with_context(|| p.display().to_string())?;
            // The full CenterNet graph is NHWC, the trimmed models NCHW.
            let nhwc = p.file_name().is_some_and(|n| n == "centernet.onnx");
            (b, if nhwc { "nhwc" } else { "nchw" }, p.display().to_string())
        }
        None => {
            let name = model_name(a)?;
            let (b, _) = callsight_vision::bundled::bundled(name).context("unknown model")?;
            (b.to_vec(), "nchw", name.to_string())
        }
    };
    for &size in &a.profile {
        let (w, h) =
            if layout == "nhwc" { (512, 512) } else { callsight_vision::preprocess::frame_shaped(640, 480, size, 32) };
        let shape = if layout == "nhwc" { [1, h, w, 3] } else { [1, 3, h, w] };
        let prof = callsight_vision::backend::profile_tract(&bytes, shape, a.runs.max(1))?;
        let total: f64 = prof.iter().map(|p| p.1).sum();
        println!("\ntract profile: {name} at {w}x{h}, mean of {} runs, total {total:.1} ms\n", a.runs);
        println!("| op | nodes | ms | share |");
        println!("|---|---|---|---|");
        for (op, ms, n) in prof.iter().take(12) {
            println!("| {op} | {n} | {ms:.1} | {:.0} % |", ms / total * 100.0);
        }
    }
    Ok(())
}
