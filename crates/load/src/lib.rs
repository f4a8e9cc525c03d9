//! Helpers shared by the load tools' binaries (`callsight-load`, `callsight-soak`,
//! `callsight-flood`).
//!
//! - [`rss_kib`]: a process's resident memory, from /proc.
//! - [`percentile_ms`]: a percentile of sorted microsecond samples, in milliseconds.

/// Resident memory of process `pid` in KiB (Linux /proc), None when unreadable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `p` (0..1) percentile of `sorted` microsecond samples, in ms; NaN when empty.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}
