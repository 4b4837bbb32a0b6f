"""The examples of README.md and docs/*.md, run as a user runs them.

Every fenced block whose info string starts with bash, sh, shell or sql is found by parsing
the markdown and run: shell blocks with ``bash -euo pipefail`` from the repository root, page
by page in dependency order, on one fresh data directory (``MLJOBS_DATA_DIR``); then the sql
blocks, in one Spark session on that data directory. The only blocks not run are marked in
their info string: ``bash emr-only`` (needs a cluster or AWS, and must say which) and README's
``bash setup`` block (exactly ``./demo.sh`` and ``./scripts/test.sh``: the demo is the same
jobs on more data, the test command is this suite). Synopses and output excerpts are
``text`` / ``json`` blocks, so they are not code.

Also here: the GPU fallback table of docs/gpu.md is what ``mljobs.gpu.fallback_table()``
renders, and README.md stays short.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages run in this order (each may use what the ones before it wrote), then any other page, README last.
ORDER = ["datasets", "ingest", "tune", "predict", "explain", "detection-metrics", "sql", "emr", "gpu"]
SHELL = {"bash", "sh", "shell"}
MARKS = {"emr-only", "setup"}
JOBS = {p.stem.replace("_", "-") for p in (ROOT / "jobs").glob("*.py") if not p.name.startswith("_")}
SETUP_COMMANDS = ["./demo.sh", "./scripts/test.sh"]
# What makes a command need a cluster or AWS (for blocks marked emr-only).
NEEDS_AWS = re.compile(r"^(aws|yarn) |mljobs\.emr (run|upload)\b|s3a?://")
LOCAL = re.compile(r"--dry-run|mljobs\.emr (steps|livy)\b")  # these name S3 but contact nothing
README_MAX_LINES = 200
MARK = "\x1e"  # printed by the DEBUG trap before every command of a block


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    marks: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a markdown file (CommonMark fences: ``` or ~~~, the closing
    fence of the same character and at least as long; content de-indented by the fence's indent)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or (m.group(2)[0] == "`" and "`" in m.group(3)):
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).strip()
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[j]))
            j += 1
        assert j < len(lines), f"{path.relative_to(ROOT)}:{i + 1}: code block never closed"
        words = info.split()
        blocks.append(Block(path, i + 1, words[0].lower() if words else "", tuple(words[1:]), "\n".join(body)))
        i = j + 1
    return blocks


def code_blocks() -> list[Block]:
    return [b for page in PAGES for b in fenced_blocks(page) if b.lang in SHELL or b.lang == "sql"]


def page_rank(path: Path) -> tuple[int, str]:
    if path.name == "README.md":
        return (len(ORDER) + 1, "")
    return (ORDER.index(path.stem), "") if path.stem in ORDER else (len(ORDER), path.stem)


def plan(blocks: list[Block]) -> tuple[list[Block], list[Block]]:
    """(shell blocks, sql blocks) to run, in order; a block whose code appears again later runs once."""
    shell, sql, seen = [], [], set()
    for b in sorted(blocks, key=lambda b: (page_rank(b.path), b.line)):
        if b.marks or b.code.strip() in seen:
            continue
        seen.add(b.code.strip())
        (sql if b.lang == "sql" else shell).append(b)
    return shell, sql


def logical_lines(code: str) -> list[str]:
    """Shell lines with backslash continuations joined, comments and blank lines dropped."""
    out, cur = [], ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        text = re.sub(r"(^|\s)#.*$", "", cur).strip()
        if text:
            out.append(" ".join(text.split()))
        cur = ""
    return out


def sql_statements(code: str) -> list[str]:
    """The statements of a sql block; a leading SparkMagic ``%%sql ...`` line is dropped."""
    lines = code.strip().splitlines()
    if lines and lines[0].startswith("%%sql"):
        lines = lines[1:]
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", "\n".join(lines)) if s.strip()]


def submitted(command: str) -> tuple[str, bool] | None:
    """(job, dry_run) when a command runs ./spark-submit.sh with a job; None otherwise."""
    try:
        args = shlex.split(command)
    except ValueError:
        args = command.split()
    if not args or not args[0].endswith("spark-submit.sh"):
        return None
    args, dry_run = args[1:], False
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--dry-run":
            dry_run = True
        elif opt in ("--env", "--artifacts", "--conf") and args:
            args.pop(0)
    if not args or args[0] not in JOBS:
        return None  # package, or an error the block's exit code reports
    return args[0], dry_run


# ---------------------------------------------------------------------------------------------
# Fast checks: what the docs hold


def test_every_bash_and_sql_block_is_run_or_marked():
    blocks = code_blocks()
    assert blocks, "no bash/sql blocks found: is the parser broken?"
    shell, sql = plan(blocks)
    planned = {b.code.strip() for b in shell + sql}
    for b in blocks:
        assert set(b.marks) <= MARKS and (b.lang in SHELL or not b.marks), \
            f"{b.where}: unknown marks {b.marks} (a bash block may be marked {sorted(MARKS)}; sql blocks always run)"
        if "setup" in b.marks:
            assert b.path.name == "README.md" and logical_lines(b.code) == SETUP_COMMANDS, \
                f"{b.where}: `bash setup` is only README's set-up block: exactly {SETUP_COMMANDS}"
        elif "emr-only" in b.marks:
            lines = logical_lines(b.code)
            assert any(NEEDS_AWS.search(line) and not LOCAL.search(line) for line in lines), \
                f"{b.where}: marked emr-only but needs no cluster or AWS (aws/yarn, mljobs.emr run/upload, S3): run it"
        else:
            assert b.code.strip() in planned, f"{b.where}: not run"
    assert sum("setup" in b.marks for b in blocks) == 1
    # README's examples are copies of the pages' examples: they run once, with their page.
    pages = {b.code.strip() for b in blocks if b.path.name != "README.md"}
    for b in blocks:
        if b.path.name == "README.md" and not b.marks:
            assert b.code.strip() in pages, f"{b.where}: README example not on any docs/ page (copy it there)"


def test_commands_in_text_blocks_are_synopses():
    """A command line in a text block must be a synopsis ([optional] parts or PLACEHOLDERS),
    not an example hidden from the run."""
    placeholder = re.compile(r"(?<![\w$-])[A-Z][A-Z0-9_]*(?!\w)")
    for page in PAGES:
        for b in fenced_blocks(page):
            if b.lang not in ("text", "console", ""):
                continue
            for line in logical_lines(b.code):
                unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", line)
                if re.match(r"(\./|\.venv/|python )", line):
                    assert "[" in unquoted or placeholder.search(unquoted), \
                        f"{b.where}: {line!r} is a command, not a synopsis: put it in a bash block"


def test_gpu_fallback_table_is_generated():
    from mljobs.gpu import fallback_table

    text = (ROOT / "docs" / "gpu.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- fallbacks:begin -->\n(.*?)<!-- fallbacks:end -->", text, re.S)
    assert m, "docs/gpu.md lacks the <!-- fallbacks:begin --> ... <!-- fallbacks:end --> markers"
    assert m.group(1) == fallback_table(), (
        "docs/gpu.md's fallback table differs from mljobs.gpu.KNOWN_FALLBACKS / EVERY_JOB: replace the lines "
        "between its markers with the output of `PYTHONPATH=lib .venv/bin/python -m mljobs.gpu table`")


def test_readme_stays_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): reference goes to docs/"


# ---------------------------------------------------------------------------------------------
# The run

# Before every command of a block: a marker line with the command, so its output can be told apart.
_PRELUDE = "_docs_mark() { local c=\"$1\"; printf '\\036%s\\n' \"${c//$'\\n'/ }\"; }\ntrap '_docs_mark \"$BASH_COMMAND\"' DEBUG\n"

_SQL_RUNNER = """
import json, sys
from mljobs.session import build_session
statements = json.load(sys.stdin)
spark = build_session("docs-sql", data_dir=sys.argv[1], conf={
    "spark.master": "local[2]", "spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"})
for s in statements:
    try:
        result = {"ok": True, "rows": len(spark.sql(s).collect())}
    except Exception as exc:
        result = {"ok": False, "error": str(exc)[:3000]}
    print("@@docs-sql " + json.dumps(result), flush=True)
spark.stop()
"""


def _env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLJOBS_ENV", "MLJOBS_ARTIFACTS", "MLJOBS_CONF_DIR")}
    env["MLJOBS_DATA_DIR"] = str(data_dir)
    paths = [str(ROOT / "lib")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT / "lib")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_shell_block(b: Block, env: dict, work: Path) -> list[tuple[str, bool]]:
    """Run one block; assert it exits 0 and every job it runs ends with an ok summary.
    Returns the (job, dry_run) it ran."""
    script = work / f"block-{b.path.stem}-{b.line}.sh"
    script.write_text(_PRELUDE + b.code + "\n")
    proc = subprocess.run(["bash", "-euo", "pipefail", str(script)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    shown = proc.stdout.replace(MARK, "$ ")
    assert proc.returncode == 0, f"{b.where} exited {proc.returncode}:\n{shown[-3000:]}\n{proc.stderr[-3000:]}"
    ran = []
    for segment in proc.stdout.split(MARK)[1:]:
        command, _, output = segment.partition("\n")
        job = submitted(command)
        if job is None:
            continue
        ran.append(job)
        out = [line for line in output.splitlines() if line.strip()]
        if job[1]:  # --dry-run prints the spark-submit command
            assert out and f"jobs/{job[0].replace('-', '_')}.py" in out[-1], f"{b.where}: {command}\n{output[-2000:]}"
            continue
        try:
            summary = json.loads(out[-1]) if out else None
        except json.JSONDecodeError:
            summary = None
        assert isinstance(summary, dict) and summary.get("job") == job[0] and summary.get("status") == "ok", \
            f"{b.where}: {command}\nlast stdout line is not an ok JSON summary:\n{output[-3000:]}\n{proc.stderr[-2000:]}"
    return ran


def run_sql_blocks(blocks: list[Block], env: dict, data_dir: Path) -> None:
    """Every statement of the sql blocks, in one Spark session on the data directory."""
    statements = [(b, s) for b in blocks for s in sql_statements(b.code)]
    proc = subprocess.run([sys.executable, "-c", _SQL_RUNNER, str(data_dir)], cwd=ROOT, env=env,
                          input=json.dumps([s for _, s in statements]), capture_output=True, text=True, timeout=600)
    results = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.split("\n") if line.startswith("@@docs-sql ")]
    assert proc.returncode == 0 and len(results) == len(statements), proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = [f"{b.where}: {s}\n  {r['error']}" for (b, s), r in zip(statements, results) if not r["ok"]]
    assert not failed, "sql examples failed:\n" + "\n".join(failed)


@pytest.mark.slow
@pytest.mark.timeout(3000)  # every job's example, torch training included: over the suite's 900 s per test
def test_examples_run(tmp_path_factory):
    shell, sql = plan(code_blocks())
    work = tmp_path_factory.mktemp("docs")
    data_dir = work / "data"
    env = _env(data_dir)
    jobs_run: set[str] = set()
    for b in shell:
        t0 = time.monotonic()
        jobs_run |= {job for job, dry in run_shell_block(b, env, work) if not dry}
        print(f"{time.monotonic() - t0:7.1f}s  {b.where}", flush=True)
    t0 = time.monotonic()
    run_sql_blocks(sql, env, data_dir)
    print(f"{time.monotonic() - t0:7.1f}s  {len(sql)} sql blocks in one session", flush=True)
    # The README promises one example per job; every job's page has one.
    assert jobs_run >= JOBS, f"no example runs {sorted(JOBS - jobs_run)}"
