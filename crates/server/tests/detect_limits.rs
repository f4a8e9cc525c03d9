//! `callsight detect` against hostile inputs, the real binary each time: a decompression
//! bomb (20 000 × 20 000 grayscale PNG, ~400 KB on disk) is refused by its pixel count
//! before decoding while the other inputs are still processed, and the child's peak RSS
//! stays bounded; an oversized `--model` is refused by size; a y4m header token starting
//! with a non-ASCII byte is no panic; onnxruntime discovery runs no code from the working
//! directory.
//!
//! One file of its own: peak RSS is read with `getrusage(RUSAGE_CHILDREN)`, which covers
//! every child this test process waited for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn test_data(name: &str) -> PathBuf {
    let p = callsight_media::synth::test_data_dir().join(name);
    assert!(p.is_file(), "missing test data {}: run scripts/fetch-test-data.sh", p.display());
    p
}

fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callsight-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

fn detect(args: &[&std::ffi::OsStr], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callsight"));
    cmd.arg("detect").args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.output().expect("run callsight detect")
}

/// A valid 8-bit grayscale PNG of `w` × `h` zeros, written row by row (never in memory).
fn write_gray_png(path: &Path, w: u32, h: u32) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create png"));
    let mut enc = png::Encoder::new(file, w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Balanced);
    let mut writer = enc.write_header().expect("png header");
    let mut stream = writer.stream_writer().expect("png stream");
    let row = vec![0u8; w as usize];
    for _ in 0..h {
        std::io::Write::write_all(&mut stream, &row).expect("png row");
    }
    stream.finish().expect("png end");
}

/// Peak resident set of the children waited for so far, in bytes (Linux: KiB units).
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    ru.ru_maxrss as u64 * 1024
}

#[test]
fn pixel_bomb_is_refused_before_decoding_and_memory_stays_bounded() {
    let dir = tmp_dir("bomb");
    let bomb = dir.join("bomb.png");
    write_gray_png(&bomb, 20_000, 20_000);
    let on_disk = std::fs::metadata(&bomb).expect("bomb").len();
    assert!(on_disk < 2_000_000, "the bomb is small on disk: {on_disk} bytes");
    let out =
        detect(&["--backend".as_ref(), "tract".as_ref(), bomb.as_os_str(), test_data("bus.jpg").as_os_str()], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused input gives a non-zero exit");
    let line = stderr.lines().find(|l| l.contains("bomb.png")).unwrap_or_else(|| panic!("names the file: {stderr}"));
    assert!(
        line.contains("400000000 pixels") && line.contains("40000000") && line.contains("--max-image-pixels"),
        "names the size and the limit: {line}"
    );
    assert!(stdout.contains("bus.jpg") && stdout.contains("\"bus\""), "the other input is processed: {stdout}");
    let peak = children_peak_rss();
    eprintln!("peak RSS of callsight detect: {} MB", peak >> 20);
    // Decoding the bomb would take 400 MB (gray) + 1.2 GB (RGB copy).
    assert!(peak < 400 << 20, "peak RSS {} MB", peak >> 20);

    // A lower limit by flag refuses an ordinary photo the same way.
    let out = detect(
        &[
            "--backend".as_ref(),
            "tract".as_ref(),
            "--max-image-pixels".as_ref(),
            "1000".as_ref(),
            test_data("bus.jpg").as_os_str(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("over the limit of 1000"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oversized_model_file_is_refused_by_size() {
    let model = callsight_media::synth::test_data_dir().join("../models/nanodet.onnx");
    assert!(model.is_file(), "{}", model.display());
    let out = detect(
        &[
            "--model".as_ref(),
            model.as_os_str(),
            "--model-kind".as_ref(),
            "nanodet".as_ref(),
            "--max-model-bytes".as_ref(),
            "1000000".as_ref(),
            test_data("bus.jpg").as_os_str(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("nanodet.onnx") && stderr.contains("over the limit of 1000000 (--max-model-bytes)"),
        "{stderr}"
    );
}

#[test]
fn y4m_header_with_non_ascii_token_is_read_and_the_batch_goes_on() {
    let dir = tmp_dir("y4m-utf8");
    // 32×16, one grey frame; the header has a token starting with "é" (two bytes).
    let mut data = b"YUV4MPEG2 W32 H16 \xc3\xa9t\xc3\xa9 F30:1 C420jpeg\nFRAME\n".to_vec();
    data.extend(std::iter::repeat_n(128u8, 32 * 16 + 2 * 16 * 8));
    std::fs::write(dir.join("odd.y4m"), &data).expect("write");
    let out = detect(
        &["--backend".as_ref(), "tract".as_ref(), dir.join("odd.y4m").as_os_str(), test_data("zidane.jpg").as_os_str()],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("odd.y4m") && stdout.contains("zidane.jpg"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn onnxruntime_discovery_runs_no_code_from_the_working_directory() {
    let dir = tmp_dir("ort-cwd");
    let marker = dir.join("PWNED");
    // What the old discovery executed: `./.venv/bin/python3` and `import onnxruntime`
    // with the working directory first on sys.path.
    std::fs::write(
        dir.join("onnxruntime.py"),
        format!("open({:?}, 'w').write('onnxruntime.py')\n", marker.display().to_string()),
    )
    .expect("write");
    std::fs::create_dir_all(dir.join(".venv/bin")).expect("venv dir");
    let fake = dir.join(".venv/bin/python3");
    std::fs::write(&fake, format!("#!/bin/sh\necho venv-python > {:?}\n", marker.display().to_string()))
        .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let img = test_data("bus.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_callsight"))
        .args(["detect", "--backend", "auto"])
        .arg(&img)
        .current_dir(&dir)
        .env_remove("CALLSIGHT_ONNXRUNTIME")
        .env_remove("ORT_DYLIB_PATH")
        .env("XDG_DATA_HOME", dir.join("xdg"))
        .output()
        .expect("run callsight detect");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!marker.exists(), "discovery ran code from the working directory: {:?}", std::fs::read_to_string(&marker));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn precision_int8_runs_the_bundled_int8_model_on_onnxruntime_and_refuses_tract() {
    // onnxruntime from the repository's .venv (scripts/fetch-test-data.sh), found by discovery.
    let out = detect(&["--precision".as_ref(), "int8".as_ref(), test_data("bus.jpg").as_os_str()], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("nanodet-int8") && stderr.contains("onnxruntime"), "says what runs: {stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().expect("a line")).expect("JSON");
    let labels: Vec<&str> =
        line["detections"].as_array().expect("array").iter().filter_map(|d| d["label"].as_str()).collect();
    // int8 at the default threshold: the bus and the two clearest persons (float finds 3-4).
    assert!(labels.contains(&"bus") && labels.iter().filter(|l| **l == "person").count() >= 2, "{labels:?}");
    let out = detect(
        &[
            "--precision".as_ref(),
            "int8".as_ref(),
            "--backend".as_ref(),
            "tract".as_ref(),
            test_data("bus.jpg").as_os_str(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--precision int8 needs onnxruntime"), "{stderr}");
}
