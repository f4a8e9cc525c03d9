//! Resident memory and CPU time from Linux `/proc`; `None` where it cannot be read
//! (another OS, a process that is gone).

/// Which process: this one, or another by pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    Current,
    Pid(u32),
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::Current => "/proc/self".into(),
            Process::Pid(pid) => format!("/proc/{pid}"),
        }
    }
}

/// A `kB` field of `/proc/PID/status` (e.g. `VmRSS:`), in KiB.
fn status_kib(process: Process, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", process.dir())).ok()?;
    parse_status_kib(&status, key)
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Resident memory (VmRSS) in KiB.
pub fn rss_kib(process: Process) -> Option<u64> {
    status_kib(process, "VmRSS:")
}

/// Peak resident memory (VmHWM) in KiB.
pub fn peak_rss_kib(process: Process) -> Option<u64> {
    status_kib(process, "VmHWM:")
}

/// KiB as MiB, NaN for `None` (for tables).
pub fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// CPU time (user + system) of this process, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    process_cpu_seconds(Process::Current)
}

/// CPU time (user + system) of a process, all its threads, in seconds.
pub fn process_cpu_seconds(process: Process) -> Option<f64> {
    stat_cpu_seconds(&format!("{}/stat", process.dir()))
}

/// CPU time (user + system) of one thread of this process, in seconds.
pub fn thread_cpu_seconds(tid: i64) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat"))
}

/// CPU time (user + system) of every live thread of this process whose name (`comm`, at
/// most 15 bytes) `wanted` accepts, by thread id, in seconds: take it before and after a
/// window and subtract per thread to get what one stage of a pipeline cost.
pub fn named_threads_cpu_seconds(wanted: impl Fn(&str) -> bool) -> std::collections::HashMap<i64, f64> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<i64>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else { continue };
        if wanted(comm.trim_end()) {
            if let Some(secs) = thread_cpu_seconds(tid) {
                out.insert(tid, secs);
            }
        }
    }
    out
}

/// CPU seconds spent between two [`named_threads_cpu_seconds`] readings (a thread first
/// seen in `after` counts from zero).
pub fn cpu_seconds_between(
    before: &std::collections::HashMap<i64, f64>,
    after: &std::collections::HashMap<i64, f64>,
) -> f64 {
    after.iter().map(|(tid, b)| b - before.get(tid).copied().unwrap_or(0.0)).sum()
}

fn stat_cpu_seconds(path: &str) -> Option<f64> {
    parse_stat_cpu_seconds(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name (which may hold spaces and parentheses);
    // utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\n";
        assert_eq!(parse_status_kib(s, "VmRSS:"), Some(1536));
        assert_eq!(parse_status_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(s, "VmSwap:"), None);
        assert_eq!(parse_status_kib("VmRSS:\tjunk kB\n", "VmRSS:"), None);
    }

    #[test]
    fn stat_cpu_fields_after_an_odd_command_name() {
        // comm "a) b" holds a space and a parenthesis; utime 250, stime 50 ticks.
        let stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_stat_cpu_seconds("42 (x"), None);
        assert_eq!(parse_stat_cpu_seconds("42 (x) S"), None);
    }

    #[test]
    fn this_process_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = rss_kib(Process::Current).expect("VmRSS of this process");
            assert!(rss > 0);
            assert!(peak_rss_kib(Process::Current).expect("VmHWM") >= rss);
            assert!(rss_kib(Process::Pid(std::process::id())).is_some());
            assert!(cpu_seconds().is_some());
            assert!(process_cpu_seconds(Process::Pid(std::process::id())).is_some());
            // A named thread that burns CPU is found by its name, and only it.
            let worker = std::thread::Builder::new()
                .name("measure-spin".into())
                .spawn(|| {
                    let start = std::time::Instant::now();
                    let mut x = 0u64;
                    while start.elapsed() < std::time::Duration::from_millis(300) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    std::thread::park();
                    x
                })
                .unwrap();
            let before = named_threads_cpu_seconds(|n| n == "no-such-thread");
            assert!(before.is_empty());
            let mut spun = 0.0;
            for _ in 0..100 {
                spun = cpu_seconds_between(&before, &named_threads_cpu_seconds(|n| n == "measure-spin"));
                if spun >= 0.1 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(spun >= 0.1, "the spinning thread's CPU: {spun}");
            worker.thread().unpark();
            worker.join().unwrap();
        }
    }
}
