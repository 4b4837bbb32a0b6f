#!/usr/bin/env bash
# Build what a cluster needs to run mljobs, under build/ (or --out DIR):
#
#   mljobs-<v>-py3-none-any.whl           the library, for pip (notebooks, bootstrap actions)
#   mljobs-<v>.zip                        the library for --py-files (pure Python)
#   mljobs-conf-<v>.tar.gz                conf/ for --archives ...#mljobs-conf (env properties, job YAML)
#   mljobs-env-py311-linux-x86_64.tar.gz  venv-pack archive of the runtime dependencies, for
#                                         --archives ...#environment with PYSPARK_PYTHON=./environment/bin/python
#
#   ./scripts/package.sh [--out DIR] [--zip-only] [--no-env] [--requirements FILE] [--extras vision]
#
# --extras adds the requirements of the named extras (comma-separated) to the environment:
# `vision` (OpenCV, scikit-image) for ingest-images. --requirements-only writes the list
# (env-requirements.txt, its path printed last) and builds no environment.
# --requirements replaces the wheel's runtime requirements in the environment (still under
# constraints.txt); the tests use it to check the recipe without packing 1.6 GB.
#
# The environment holds the runtime dependencies only: not pyspark/py4j (the cluster's Spark
# provides its own, matching its JVM side) and not mljobs (it travels as the zip, so a code
# change does not mean re-uploading a 1 GB archive).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$ROOT/build"
zip_only=0
with_env=1
requirements=""
extras=""
reqs_only=0
USAGE="usage: $0 [--out DIR] [--zip-only] [--no-env] [--requirements FILE] [--extras LIST] [--requirements-only]"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "$USAGE" >&2; exit 2; }; out="$2"; shift 2 ;;
    --requirements) [[ $# -ge 2 && -f "$2" ]] || { echo "$USAGE (FILE must exist)" >&2; exit 2; }; requirements="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --extras) [[ $# -ge 2 ]] || { echo "$USAGE" >&2; exit 2; }; extras="$2"; shift 2 ;;
    --requirements-only) reqs_only=1; shift ;;
    --zip-only) zip_only=1; shift ;;
    --no-env) with_env=0; shift ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
say() { echo "[package] $*" >&2; }

version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/lib/mljobs/__init__.py")"
zip_path="$out/mljobs-$version.zip"
# Sorted names and -X (no extra attributes) keep the listing stable between builds; written
# aside and renamed, so a process reading the zip (a test worker, a job) never sees half of it.
tmp_zip="$(mktemp "$out/.mljobs-zip.XXXXXX")" && rm -f "$tmp_zip" && tmp_zip="$tmp_zip.zip"
(cd "$ROOT/lib" && find mljobs -name '*.py' | LC_ALL=C sort | zip -q -X "$tmp_zip" -@) && mv -f "$tmp_zip" "$zip_path"
echo "$zip_path"
[[ $zip_only -eq 1 ]] && exit 0

PY="${MLJOBS_PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in "$ROOT/.venv/bin/python" python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
[[ -n "$PY" ]] || { say "error: Python 3.11 is required (set MLJOBS_PYTHON)"; exit 1; }

conf_tar="$out/mljobs-conf-$version.tar.gz"
# Only what jobs read at run time; the cluster JSON and log4j config stay out.
(cd "$ROOT/conf" && tar --sort=name --owner=0 --group=0 --numeric-owner -czf "$conf_tar" ./*.properties ./*.yaml)
echo "$conf_tar"

# Build the wheel from a copy: setuptools writes build/ and *.egg-info next to setup.py,
# which would land in our own build/ folder.
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp -r "$ROOT/setup.py" "$ROOT/lib" "$src/"
[[ -f "$ROOT/README.md" ]] && cp "$ROOT/README.md" "$src/"
find "$src/lib" -name '__pycache__' -prune -exec rm -rf {} +
rm -f "$out"/mljobs-*.whl
"$PY" -m pip wheel -q --no-deps -w "$out" "$src" >&2
wheel="$(ls "$out"/mljobs-"$version"-*.whl)"
echo "$wheel"
[[ $with_env -eq 1 ]] || exit 0

# The environment's requirements: the wheel's own (not pyspark/py4j) and those of --extras, or --requirements FILE.
reqs="$out/env-requirements.txt"
write_requirements() {
  if [[ -n "$requirements" ]]; then
    cp "$requirements" "$reqs"
    return
  fi
  "$PY" - "$wheel" "$extras" > "$reqs" <<'PY'
import re, sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
wanted = {e.strip() for e in sys.argv[2].split(",") if e.strip()}
offered = set(msg.get_all("Provides-Extra") or [])
if wanted - offered:
    sys.exit(f"unknown extras {sorted(wanted - offered)}; the wheel offers {sorted(offered)}")
for req in msg.get_all("Requires-Dist") or []:
    extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
    if extra and extra.group(1) not in wanted:
        continue
    req = req.split(";", 1)[0].strip() if extra else req
    name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
    if name.lower() in ("pyspark", "py4j"):
        continue
    print(req)
PY
}
write_requirements
if [[ $reqs_only -eq 1 ]]; then echo "$reqs"; exit 0; fi

if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
  say "error: the environment archive holds native wheels: build it on Linux x86-64 (EMR's platform)"; exit 1
fi
"$PY" -c 'import venv_pack' 2>/dev/null || { say "error: venv-pack is missing: ./scripts/bootstrap.sh --test, or pip install -c constraints.txt venv-pack"; exit 1; }
env_dir="$out/env-py311"
env_tar="$out/mljobs-env-py311-linux-x86_64.tar.gz"
rm -rf "$env_dir" "$env_tar"
# The venv's base must be a real interpreter, not another venv's python.
base_py="$("$PY" -c 'import sys; print(sys._base_executable)')"
"$base_py" -m venv "$env_dir"
say "installing $(wc -l < "$reqs") runtime requirements into a fresh venv (constraints.txt pins)"
"$env_dir/bin/python" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -r "$reqs" >&2
# pip itself is not needed on the cluster.
"$env_dir/bin/python" -m pip uninstall -q -y pip >&2 || true
# EMR 7's python3.11 is /usr/bin/python3.11: the packed interpreter link and pyvenv.cfg must
# name it, not this machine's python. (venv-pack 0.2's --python-prefix mangles versioned
# names, python3.11 -> python3.113.11, so the link is set here.) Override the prefix with
# MLJOBS_TARGET_PYTHON_PREFIX for other images.
target_prefix="${MLJOBS_TARGET_PYTHON_PREFIX:-/usr}"
target_prefix="${target_prefix%/}"
ln -sfn "$target_prefix/bin/python3.11" "$env_dir/bin/python3.11"
"$PY" - "$env_dir/pyvenv.cfg" "$target_prefix" <<'PY'
import sys
cfg, prefix = sys.argv[1], sys.argv[2]
keep = [l for l in open(cfg).read().splitlines() if l.split("=")[0].strip() not in ("home", "executable", "command")]
open(cfg, "w").write("\n".join([f"home = {prefix}/bin", *keep, f"executable = {prefix}/bin/python3.11"]) + "\n")
PY
"$PY" -m venv_pack -p "$env_dir" -o "$env_tar" -q >&2
chmod 644 "$env_tar"
rm -rf "$env_dir"
echo "$env_tar"
