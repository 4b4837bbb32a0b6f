"""GPU readiness: what the RAPIDS Accelerator would leave on the CPU.

The rapids-4-spark jar can analyse plans on a machine without a GPU: either the
session extension in ``explainOnly`` mode (every query's fallbacks are logged by
GpuOverrides) or ``ExplainPlan.explainPotentialGpuPlan`` for one DataFrame.
"""
from __future__ import annotations

import re

from pyspark.sql import DataFrame

from mljobs.config import env_properties

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

_FALLBACK = re.compile(r"^\s*!(?:Exec|Expression|Partitioning|Scan|Output|NOT_FOUND)?\s*<(\w+)>\s*(.*?)\s*cannot run on GPU because (.*)$")


def parse_fallbacks(text: str) -> list[dict]:
    """Operators and expressions reported as 'cannot run on GPU' in explain output."""
    out = []
    for line in text.splitlines():
        m = _FALLBACK.match(line)
        if m:
            out.append({"operator": m.group(1), "detail": m.group(2), "reason": m.group(3).strip()})
    return out


def potential_gpu_plan(df: DataFrame, explain: str = "NOT_ON_GPU") -> str:
    """The RAPIDS explain text of one DataFrame (needs the rapids-4-spark jar on the classpath)."""
    jvm = df.sparkSession.sparkContext._jvm
    return jvm.com.nvidia.spark.rapids.ExplainPlan.explainPotentialGpuPlan(df._jdf, explain)
