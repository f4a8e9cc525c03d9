//! Measuring helpers, one of each, shared by the media leg's stats (`/healthz` latency
//! percentiles), the benches (`media-load`, `sfu-load`, `vision-bench`), the load tools
//! (`callsight-load`, `callsight-soak`) and tests (RSS checks). No dependencies.
//!
//! Module map:
//! - [`percentile`]: the nearest-rank percentile of samples.
//! - [`proc`]: resident memory and CPU time of a process or thread, from Linux `/proc`.

pub mod percentile;
pub mod proc;

pub use percentile::percentile;
