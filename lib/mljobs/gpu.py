"""GPU readiness: what the RAPIDS Accelerator would leave on the CPU, and why.

The rapids-4-spark jar can analyse plans on a machine without a GPU: either the
session extension in ``explainOnly`` mode (every query's fallbacks are logged by
GpuOverrides) or ``ExplainPlan.explainPotentialGpuPlan`` for one DataFrame.

Each job declares, in its job.py (``GPU_FALLBACKS``), every fallback its plans are expected
to report and why each stays on the CPU (or why it is harmless); ``known_fallbacks()``
(also ``KNOWN_FALLBACKS``) collects them from the registry; ``EVERY_JOB`` lists the ones any
job may report (explainOnly artefacts, metastore commands). ``classify`` sorts a job's
reported fallbacks into known and unexpected ones; ``tests/test_gpu_readiness.py`` runs
every job with the real jar and fails on an unexpected one, and writes the report the
docs/gpu.md table comes from (``render_markdown``).

    python -m mljobs.gpu check JOB LOGFILE   # classify the fallbacks in a job's driver log
    python -m mljobs.gpu table               # the table of known fallbacks (docs/gpu.md)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass

from mljobs.config import env_properties
from mljobs.registry import JOBS


def rapids_configured(conf) -> bool:
    """Whether a session's conf (SparkConf) loads the RAPIDS Accelerator: its plugin (--env
    emr-gpu) or its SQL extension alone (explainOnly, see explain_only_conf)."""
    return any("com.nvidia.spark" in conf.get(key, "") for key in ("spark.plugins", "spark.sql.extensions"))


def explain_only_conf() -> dict[str, str]:
    """Spark properties that make a CPU-only session report GPU fallbacks for every query,
    under the RAPIDS settings we deploy with (conf/emr-gpu.properties). The jar's
    SQLPlugin would also start its executor plugin, which needs CUDA, so only the SQL
    extension is installed."""
    conf = {k: v for k, v in env_properties("emr-gpu").items() if k.startswith("spark.rapids.sql.")}
    conf.update(
        {
            "spark.sql.extensions": "com.nvidia.spark.rapids.SQLExecPlugin",
            "spark.rapids.sql.mode": "explainOnly",
            "spark.rapids.sql.explain": "NOT_ON_GPU",
        }
    )
    conf.pop("spark.rapids.sql.enabled", None)
    return conf


_NODE = re.compile(r"^(\s*)([!*@])(\w*)\s*<(\w+)>\s*(.*)$")
_BECAUSE = re.compile(r"^(.*?)\s*cannot run on GPU because (.*)$")
_NOT_ALL_EXPRESSIONS = "not all expressions can be replaced"


def parse_fallbacks(text: str) -> list[dict]:
    """Operators and expressions reported as 'cannot run on GPU' in explain output.

    Each: operator, detail, reason, columns (the attributes listed directly under it:
    an operator's output or an expression's inputs) and, for an operator that falls back
    because of its expressions, causes (those of its expressions that cannot run)."""
    out: list[dict] = []
    stack: list[tuple[int, bool, dict | None]] = []  # (indent, is an operator, its fallback)
    for line in text.splitlines():
        m = _NODE.match(line)
        if not m:
            if not line.startswith(" "):
                stack = []  # a new log record
            continue
        indent, mark, kind, name, rest = len(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        is_exec = kind == "Exec" or (not kind and name.endswith("Exec"))
        if name == "AttributeReference":
            parent = stack[-1] if stack else None
            if parent and parent[2] is not None and parent[0] == indent - 2:
                column = rest.split("#", 1)[0]
                if column not in parent[2]["columns"]:
                    parent[2]["columns"].append(column)
        fb = None
        because = _BECAUSE.match(rest) if mark == "!" else None
        if because:
            fb = {"operator": name, "detail": because.group(1), "reason": because.group(2).strip(),
                  "columns": [], "causes": []}
            if not is_exec:  # an expression: a cause of the operator it belongs to
                owner = next((node for node in reversed(stack) if node[1]), None)
                if owner and owner[2] is not None and _NOT_ALL_EXPRESSIONS in owner[2]["reason"] \
                        and name not in owner[2]["causes"]:
                    owner[2]["causes"].append(name)
            out.append(fb)
        stack.append((indent, is_exec, fb))
    return out


@dataclass(frozen=True)
class Known:
    """A fallback we expect and can explain. It matches a reported one with the same
    operator (or one of ``A|B|...``: one cause that shows on several operators and expressions)
    whose reason contains ``reason`` and whose columns include ``columns``."""

    operator: str
    reason: str
    where: str  # what in our code produces it
    why: str  # why it stays on the CPU, or why it does not matter
    columns: tuple[str, ...] = ()
    required: bool = True  # must be reported on every run of the job (keeps the README true)

    def matches(self, fb: dict) -> bool:
        return (fb["operator"] in self.operator.split("|") and self.reason in fb["reason"]
                and set(self.columns) <= set(fb["columns"]))

    @property
    def label(self) -> str:
        return f"{self.operator} ({', '.join(self.columns)})" if self.columns else self.operator


UNSUPPORTED_CLASS = "GPU does not currently support the operator class"
DRIVER_ROWS = ("rows built on the driver enter Spark as an RDD scan, which has no GPU version: one small "
                "row-to-columnar step, then the GPU")

# Reported by any job.
EVERY_JOB = [
    Known("AQEShuffleReadExec", "child not being columnar", "every shuffle under adaptive execution",
          "an explainOnly artefact: explainOnly converts nothing, so the exchange below AQE's shuffle read is a "
          "CPU exchange; with the plugin on, the exchange is a GPU shuffle and the read is replaced too",
          required=False),
    Known("BroadcastHashJoinExec", "explain only mode with AQE", "broadcast joins",
          "an explainOnly artefact: under adaptive execution explainOnly cannot tell whether the broadcast "
          "would be on the GPU, so it reports every broadcast join; with AQE off it reports none of them",
          required=False),
    Known("CommandResultExec", UNSUPPORTED_CLASS, "SHOW TBLPROPERTIES / SHOW PARTITIONS",
          "a metastore command's result on the driver: no data is processed", required=False),
    Known("LocalTableScanExec", UNSUPPORTED_CLASS, "spark.catalog.listColumns",
          "the catalog's column list, a local relation on the driver: no data is processed",
          columns=("name", "dataType", "isPartition"), required=False),
]

def known_fallbacks() -> dict[str, list[Known]]:
    """Every job's own known fallbacks, as the job declares them (``GPU_FALLBACKS`` in its job.py)."""
    from mljobs.registry import JOBS, job_module

    return {name: list(job_module(name).GPU_FALLBACKS) for name in JOBS}


def __getattr__(name: str):
    if name == "KNOWN_FALLBACKS":  # read from the jobs each time: they import this module
        return known_fallbacks()
    raise AttributeError(name)


def _normalized(text: str) -> str:
    return re.sub(r"#\d+L?", "", text)


def classify(job: str, fallbacks: list[dict]) -> dict:
    """{known: [{entry, reports}], unexpected: [{operator, reason, columns, causes, reports}],
    missing: [entries of the job that were not reported]}."""
    entries = known_fallbacks()[job] + EVERY_JOB
    seen: dict[int, int] = {}
    unexpected: dict[tuple, dict] = {}
    for fb in fallbacks:
        i = next((i for i, k in enumerate(entries) if k.matches(fb)), None)
        if i is None and _NOT_ALL_EXPRESSIONS in fb["reason"] and fb["causes"]:
            continue  # reported through its expressions, each classified on its own
        if i is not None:
            seen[i] = seen.get(i, 0) + 1
            continue
        key = (fb["operator"], _normalized(fb["reason"]), tuple(fb["columns"]))
        item = unexpected.setdefault(key, {"operator": fb["operator"], "detail": _normalized(fb["detail"])[:300],
                                           "reason": _normalized(fb["reason"]), "columns": fb["columns"],
                                           "causes": fb["causes"], "reports": 0})
        item["reports"] += 1
    return {
        "known": [{**asdict(entries[i]), "label": entries[i].label, "reports": n} for i, n in sorted(seen.items())],
        "unexpected": list(unexpected.values()),
        "missing": [{**asdict(k), "label": k.label} for i, k in enumerate(entries) if k.required and i not in seen],
    }


def render_markdown(results: dict[str, dict]) -> str:
    """The docs/gpu.md table from {job: classify(...)}: each job's own fallbacks, then the
    ones any job may report, with the jobs that reported them."""
    lines = ["| job | operator (columns) | where | why it stays on the CPU / why it is harmless |",
             "|---|---|---|---|"]
    shared: dict[str, tuple[dict, list[str]]] = {}
    for job, res in results.items():
        own = [k for k in res["known"] if not _is_shared(k)]
        if not own and not res["unexpected"]:
            lines.append(f"| {job} | none of its own | | |")
        for k in own:
            lines.append(f"| {job} | `{k['label']}` | {k['where']} | {k['why']} |")
        for u in res["unexpected"]:
            lines.append(f"| {job} | `{u['operator']}` **unexpected** | {u['detail'][:80]} | {u['reason'][:200]} |")
        for k in res["known"]:
            if _is_shared(k):
                shared.setdefault(k["label"], (k, []))[1].append(job)
    for label, (k, jobs) in shared.items():
        lines.append(f"| {', '.join(jobs)} | `{label}` | {k['where']} | {k['why']} |")
    return "\n".join(lines) + "\n"


def _is_shared(entry: dict) -> bool:
    return any(entry["operator"] == k.operator and entry["reason"] == k.reason for k in EVERY_JOB)


def fallback_table() -> str:
    """The markdown table of every listed fallback, from the jobs' ``GPU_FALLBACKS`` and ``EVERY_JOB``
    alone (no Spark run): each job's own entries ("none of its own" where it has none), then
    the ones any job may report. docs/gpu.md holds its output."""
    lines = ["| job | operator (columns) | where | why it stays on the CPU / why it is harmless |",
             "|---|---|---|---|"]
    for job, entries in known_fallbacks().items():
        if not entries:
            lines.append(f"| {job} | none of its own | | |")
        lines += [f"| {job} | `{k.label}` | {k.where} | {k.why} |" for k in entries]
    lines += [f"| any job | `{k.label}` | {k.where} | {k.why} |" for k in EVERY_JOB]
    return "\n".join(lines) + "\n"


def potential_gpu_plan(df, explain: str = "NOT_ON_GPU") -> str:
    """The RAPIDS explain text of one DataFrame (needs the rapids-4-spark jar on the classpath)."""
    jvm = df.sparkSession.sparkContext._jvm
    return jvm.com.nvidia.spark.rapids.ExplainPlan.explainPotentialGpuPlan(df._jdf, explain)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mljobs.gpu", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="classify the GPU fallbacks logged in a job's driver log "
                                     "(spark.rapids.sql.explain=NOT_ON_GPU); exit 1 on an unexpected one")
    c.add_argument("job", choices=JOBS)
    c.add_argument("log", nargs="+", help="driver log file(s) (stderr of spark-submit)")
    c.add_argument("--json", action="store_true", help="print the classification as JSON instead of a table")
    sub.add_parser("table", help="print the table of known fallbacks (docs/gpu.md, between its fallbacks markers)")
    args = p.parse_args(argv)
    if args.cmd == "table":
        print(fallback_table(), end="")
        return 0
    text = "\n".join(open(f, encoding="utf-8", errors="replace").read() for f in args.log)
    res = classify(args.job, parse_fallbacks(text))
    print(json.dumps(res, indent=1) if args.json else render_markdown({args.job: res}), end="" if not args.json else "\n")
    return 1 if res["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
