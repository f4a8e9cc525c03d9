//! Finding a usable libonnxruntime: explicit path, env vars, the venv of
//! `scripts/install-onnxruntime.sh`, the `onnxruntime` Python package, system library paths. Every candidate is checked (ELF file, `OrtGetApiBase`,
//! version) before `ort` sees it, because `ort` panics or aborts on a bad library.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a candidate came from (for messages).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub path: PathBuf,
    pub origin: String,
}

/// A checked library: its path and version string.
#[derive(Clone, Debug)]
pub struct FoundLib {
    pub path: PathBuf,
    pub version: String,
    pub origin: String,
}

/// The oldest onnxruntime whose C API the `ort` crate in use accepts (1.MIN.x).
pub fn min_minor_version() -> u32 {
    #[cfg(feature = "ort")]
    {
        ort::MINOR_VERSION
    }
    #[cfg(not(feature = "ort"))]
    {
        0
    }
}

/// Candidates in lookup order. `explicit` (config / `--onnxruntime`) comes first, then
/// `CALLSIGHT_ONNXRUNTIME`, `ORT_DYLIB_PATH`, the venv that `scripts/install-onnxruntime.sh`
/// makes (`$XDG_DATA_HOME/callsight/onnxruntime`), the repository's own `.venv` (tests,
/// `cargo run`), the user's site-packages, the `python3` on `PATH` (absolute entries only,
/// run isolated), then system paths.
///
/// Nothing here runs code from the working directory: venvs are searched on disk without
/// running their Python, and the one Python that is run is started with `-I` (no current
/// directory or user paths on `sys.path`, no `PYTHON*` variables) and only asks where the
/// package is (`importlib.util.find_spec`, which does not import it).
pub fn candidates(explicit: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(Candidate { path: p.to_path_buf(), origin: "--onnxruntime".into() });
        // An explicit choice is the only one tried.
        return out;
    }
    for var in ["CALLSIGHT_ONNXRUNTIME", "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            out.push(Candidate { path: PathBuf::from(v), origin: format!("env {var}") });
            return out;
        }
    }
    let mut push = |path: Option<PathBuf>, origin: String| {
        if let Some(path) = path {
            if !out.iter().any(|c: &Candidate| c.path == path) {
                out.push(Candidate { path, origin });
            }
        }
    };
    if let Some(venv) = install_dir() {
        push(venv_lib(&venv), format!("venv {} (scripts/install-onnxruntime.sh)", venv.display()));
    }
    let repo_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv");
    push(venv_lib(&repo_venv), format!("venv {}", repo_venv.display()));
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute()) {
        push(venv_lib(&home.join(".local")), "user site-packages".into());
    }
    if let Some(py) = python_on_path() {
        push(python_lib(&py), format!("Python package via {}", py.display()));
    }
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/opt/onnxruntime/lib",
    ] {
        push(newest_lib_in(Path::new(dir)), format!("system path {dir}"));
    }
    out
}

/// Where `scripts/install-onnxruntime.sh` puts its venv: `$XDG_DATA_HOME/callsight/onnxruntime`,
/// `XDG_DATA_HOME` defaulting to `~/.local/share`. Relative values are ignored (XDG spec).
pub fn install_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .filter(|p| p.is_absolute())?;
    Some(data.join("callsight/onnxruntime"))
}

/// `libonnxruntime.so*` of the `onnxruntime` package under a venv or prefix
/// (`lib/python3*/site-packages/onnxruntime/capi/`), found on disk without running Python.
pub fn venv_lib(prefix: &Path) -> Option<PathBuf> {
    let mut libdirs: Vec<PathBuf> = std::fs::read_dir(prefix.join("lib"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3")))
        .collect();
    // Newest Python first (python3.12 before python3.11): lengths, then names.
    libdirs.sort_by(|a, b| (b.as_os_str().len(), b).cmp(&(a.as_os_str().len(), a)));
    libdirs.into_iter().find_map(|d| newest_lib_in(&d.join("site-packages/onnxruntime/capi")))
}

/// The first `python3` in an absolute `PATH` entry (a relative entry such as `.` would
/// resolve against the working directory).
fn python_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).filter(|d| d.is_absolute()).map(|d| d.join("python3")).find(|p| p.is_file())
}

/// Asks a Python interpreter, isolated (`-I`), where its `onnxruntime` package lives,
/// without importing it, and looks for the shared library there.
fn python_lib(python: &Path) -> Option<PathBuf> {
    let script = "import importlib.util as u, os\n\
s = u.find_spec('onnxruntime')\n\
print(os.path.join(list(s.submodule_search_locations)[0], 'capi') if s and s.submodule_search_locations else '')";
    // Started from the root directory, so not even a relative path in the interpreter's
    // own configuration points into the caller's working directory.
    let out = Command::new(python).args(["-I", "-c", script]).current_dir("/").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_absolute() {
        return None;
    }
    newest_lib_in(&dir)
}

/// `libonnxruntime.so*` in a directory, preferring the fully versioned name.
fn newest_lib_in(dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib")
        })
        .collect();
    libs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    libs.into_iter().next()
}

/// Checks one candidate without handing it to `ort`: a regular ELF file that loads,
/// exports `OrtGetApiBase` and reports a version new enough.
pub fn check(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.read_exact(&mut magic).map_err(|_| format!("{}: too short to be a shared library", path.display()))?;
    }
    if cfg!(target_os = "linux") && &magic != b"\x7fELF" {
        return Err(format!("{}: not a shared library (no ELF header)", path.display()));
    }
    let version = api_version(path)?;
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("{}: unreadable version {version:?}", path.display()))?;
    if minor < min_minor_version() {
        return Err(format!(
            "{}: onnxruntime {version} is too old (need 1.{}.x or newer)",
            path.display(),
            min_minor_version()
        ));
    }
    Ok(version)
}

#[repr(C)]
struct OrtApiBase {
    get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "C" fn() -> *const std::ffi::c_char,
}

fn api_version(path: &Path) -> Result<String, String> {
    // SAFETY: loading runs the library's initialisers; the file is an ELF shared object
    // the user pointed us at (the same thing `ort` would do next).
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("{}: cannot load: {e}", path.display()))?;
    // SAFETY: signature of OrtGetApiBase from onnxruntime_c_api.h.
    let get_base: libloading::Symbol<'_, unsafe extern "C" fn() -> *const OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase\0") }
            .map_err(|_| format!("{}: not onnxruntime (no OrtGetApiBase symbol)", path.display()))?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a static struct or null.
    let base = unsafe { get_base() };
    if base.is_null() {
        return Err(format!("{}: OrtGetApiBase returned null", path.display()));
    }
    // SAFETY: non-null pointer to the static OrtApiBase; the version string is static.
    let s = unsafe { ((*base).get_version_string)() };
    if s.is_null() {
        return Err(format!("{}: no version string", path.display()));
    }
    let v = unsafe { std::ffi::CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // Keep the library loaded: unloading onnxruntime is not safe once its threads run.
    std::mem::forget(lib);
    Ok(v)
}

/// Tries the candidates in order; the first that passes [`check`] wins. On failure the
/// error lists every candidate and why it was refused.
pub fn find(explicit: Option<&Path>) -> Result<FoundLib, String> {
    let cands = candidates(explicit);
    if cands.is_empty() {
        return Err("no candidates: no --onnxruntime, CALLSIGHT_ONNXRUNTIME or ORT_DYLIB_PATH, no Python onnxruntime package, no libonnxruntime.so in system paths (scripts/install-onnxruntime.sh installs one)".into());
    }
    let mut tried = Vec::new();
    for c in cands {
        match check(&c.path) {
            Ok(version) => {
                return Ok(FoundLib { path: c.path, version, origin: c.origin });
            }
            Err(e) => tried.push(format!("{} ({e})", c.origin)),
        }
    }
    Err(format!("tried: {}", tried.join("; ")))
}
