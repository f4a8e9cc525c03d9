#!/usr/bin/env bash
# Fetch the photos of the labelled evaluation set (bench/eval/annotations.json) into
# test-data/eval/ (git-ignored). Every photo comes out of a pinned registry package:
#   PyPI wheels    scikit-image 0.25.2, matplotlib 3.10.7, scikit-learn 1.7.2
#                  (+ ultralytics, via scripts/fetch-test-data.sh: bus.jpg, zidane.jpg)
#   Debian 12      opencv-doc 4.6.0+dfsg-12, ruby-rmagick-doc 4.2.3-2+deb12u1
#   npm            @vladmandic/face-api 1.7.15
# The annotation file names, per photo, the package, the member path inside it, the
# photo's sha256 and its licence; this script reads that list, downloads each package
# once into .cache/eval-set/, extracts the members, and checks every sha256.
#
# Idempotent: photos already present with the right sha256 are skipped (no download).
# Env: CALLSIGHT_TEST_DATA overrides the output folder's parent (default <repo>/test-data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${CALLSIGHT_TEST_DATA:-$ROOT/test-data}/eval"
CACHE="$ROOT/.cache/eval-set"
SET="$ROOT/bench/eval/annotations.json"
log() { printf '[fetch-eval-set] %s\n' "$*" >&2; }

mkdir -p "$OUT" "$CACHE"
# The project venv (pillow, numpy) and bus.jpg / zidane.jpg.
bash "$ROOT/scripts/fetch-test-data.sh" >/dev/null
PY="$ROOT/.venv/bin/python"

"$PY" - "$SET" "$OUT" "$CACHE" "${CALLSIGHT_TEST_DATA:-$ROOT/test-data}" <<'PYEOF'
import hashlib, io, json, pathlib, shutil, subprocess, sys, tarfile, zipfile

set_path, out, cache, test_data = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
venv_pip = pathlib.Path(sys.executable).parent / "pip"
images = json.load(open(set_path))["images"]

def log(msg):
    print(f"[fetch-eval-set] {msg}", file=sys.stderr)

def sha(data):
    return hashlib.sha256(data).hexdigest()

def fetch(package):
    """Downloads a package archive once; returns its path."""
    kind, spec = package.split(":", 1)
    if kind == "test-data":  # already fetched by scripts/fetch-test-data.sh
        return test_data
    if kind == "pypi":
        name, version = spec.split("==")
        stem = name.replace("-", "_")
        found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
        if not found:
            log(f"pip download {spec} (wheel, no deps)")
            subprocess.run([str(venv_pip), "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                            "--only-binary=:all:", "-d", str(cache), spec], check=True)
            found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
        return found[0]
    if kind == "debian":
        name, version = spec.split("=")
        found = sorted(cache.glob(f"{name}_{version.replace(':', '%3a')}_*.deb"))
        if not found:
            log(f"apt-get download {spec}")
            r = subprocess.run(["apt-get", "download", spec], cwd=cache)
            if r.returncode != 0:
                subprocess.run(["apt-get", "update", "-qq"], check=True)
                subprocess.run(["apt-get", "download", spec], cwd=cache, check=True)
            found = sorted(cache.glob(f"{name}_*.deb"))
        return found[0]
    if kind == "npm":
        name, version = spec.rsplit("@", 1)
        tgz = cache / (name.lstrip("@").replace("/", "-") + f"-{version}.tgz")
        if not tgz.exists():
            log(f"npm pack {spec}")
            subprocess.run(["npm", "pack", "--silent", spec], cwd=cache, check=True, stdout=subprocess.DEVNULL)
        return tgz
    raise SystemExit(f"unknown package kind {kind!r}")

def members(archive, paths):
    """Reads files from a wheel, a .deb (its data tar, read once) or an npm tarball."""
    if archive.is_dir():
        return {p: (archive / p).read_bytes() for p in paths}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {p: z.read(p) for p in paths}
    if archive.suffix == ".tgz":
        with tarfile.open(archive) as t:
            return {p: t.extractfile(p).read() for p in paths}
    if archive.suffix == ".deb":
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], check=True, capture_output=True).stdout
        want = {"./" + p.lstrip("/"): p for p in paths}
        got = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for info in t:
                if info.name in want:
                    got[want[info.name]] = t.extractfile(info).read()
        missing = set(paths) - set(got)
        if missing:
            raise SystemExit(f"{archive.name}: no {sorted(missing)}")
        return got
    raise SystemExit(f"cannot read {archive}")

todo = {}
done = 0
for im in images:
    dst = out / im["file"]
    if dst.exists() and sha(dst.read_bytes()) == im["sha256"]:
        done += 1
    else:
        todo.setdefault(im["package"], []).append(im)
for pkg, ims in todo.items():
    data = members(fetch(pkg), [im["member"] for im in ims])
    for im in ims:
        got = data[im["member"]]
        if sha(got) != im["sha256"]:
            raise SystemExit(f"{im['file']}: sha256 {sha(got)} from {pkg}:{im['member']}, expected {im['sha256']}")
        dst = out / im["file"]
        tmp = dst.with_suffix(dst.suffix + ".tmp")
        tmp.write_bytes(got)
        tmp.replace(dst)
fetched = sum(len(v) for v in todo.values())
log(f"{len(images)} photos in {out} ({fetched} extracted, {done} already there)")
PYEOF
