//! `callsight detect`: run the detector over images, directories and y4m video from the
//! command line (one JSON line per image/frame). The logic lives in `callsight_vision::cli`.

use crate::detector_args::DetectorArgs;
use anyhow::Context;
use callsight_vision::cli::{self, CliOptions};
use callsight_vision::{DetectOptions, Detector, DetectorConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct DetectArgs {
    /// Images (jpg, png), y4m videos, or directories of them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write copies with boxes and labels drawn into this directory.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,
    /// Minimum score (0..1).
    #[arg(long, default_value_t = DetectOptions::default().score_threshold)]
    pub threshold: f32,
    /// Keep only these classes: names or ids, comma-separated (e.g. person,car).
    #[arg(long)]
    pub classes: Option<String>,
    #[command(flatten)]
    pub detector: DetectorArgs,
}

impl DetectArgs {
    pub fn detector_config(&self) -> DetectorConfig {
        let mut config = self.detector.config(1);
        // One file at a time: all cores go to the one inference.
        if config.threads == 0 {
            config.threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        config
    }
}

pub fn run(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let det = Detector::load(&args.detector_config()).context("loading the detector")?;
    let info = det.info();
    tracing::info!(backend = %info.backend, version = %info.version, threads = info.threads, model = %info.model, "detect");
    let classes = match &args.classes {
        Some(spec) => Some(cli::parse_classes(spec, det.labels())?),
        None => None,
    };
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold {} is outside 0..1", args.threshold);
    }
    let opts = CliOptions {
        inputs: args.inputs.clone(),
        annotate: args.annotate.clone(),
        detect: DetectOptions { score_threshold: args.threshold, classes, ..Default::default() },
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let failed = cli::run(&det, &opts, &mut stdout.lock(), &mut stderr.lock());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
