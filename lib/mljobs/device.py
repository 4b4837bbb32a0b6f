"""The device rule, once for every job: ``spark.mljobs.device`` (cpu or cuda) when set, else
cuda under the GPU environment (``--env emr-gpu``), else cpu. xgboost and torch both take
the answer as their ``device``."""
from __future__ import annotations

from mljobs.errors import MljobsError

DEVICES = ("cpu", "cuda")
DEVICE_CONF = "spark.mljobs.device"


def device_for(spark) -> str:
    """'cpu' or 'cuda' for this session (a SparkSession)."""
    from mljobs.session import env_of

    explicit = (spark.conf.get(DEVICE_CONF, "") or "").strip().lower()
    if explicit:
        if explicit not in DEVICES:
            raise MljobsError(f"{DEVICE_CONF}={explicit!r}: valid: {', '.join(DEVICES)}")
        return explicit
    return "cuda" if env_of(spark) == "emr-gpu" else "cpu"
