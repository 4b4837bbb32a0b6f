"""Image files, for every job that reads them (ingest-images, classify): listing them with
Spark's binaryFile source (empty files included, which the scan skips), and what an image file
is, decided inside a task: its format (from its first bytes, never its name), whether OpenCV
decodes it whole, its size and channels, its sha256; or why it cannot be used (one of the
reasons below, with a detail)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import fs
from mljobs.errors import InputError
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.session import ARROW_BATCH

# The quarantine's reasons, fixed words (the summary counts them); the detail says more.
EMPTY, NOT_IMAGE, TRUNCATED, UNDECODABLE, TOO_SMALL = "empty file", "not an image", "truncated", "cannot decode", "too small"
UNREADABLE = "cannot read"
NO_LABEL, MISSING, BAD_MANIFEST = "no label", "missing file", "bad manifest line"

_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
FIELDS = ("format", "width", "height", "channels", "sha256", "reason", "detail")

# The decoding pass: 64 images per Arrow batch (their bytes travel in it); files packed into
# tasks by their bytes, not by Spark's 4 MB "cost" of opening each (1,797 digits made 113 tasks
# that took 30 s; packed, 4 s), and into few tasks: 2 a core, up to 1 GB each, not the 64 MB
# partitions of conf/local.properties. A Python task costs ~0.2 s of CPU before its first image
# (16,000 JPEGs read in 26 tasks: 7.2 s of CPU; in 4: 2.2 s); 2 a core still leave no core idle
# at the end (3 tasks on 2 cores took the time of 4).
IMAGES_PER_BATCH = 64
OPEN_COST = 64 << 10
TASKS_PER_CORE = 2
MAX_TASK_BYTES = 1 << 30

# What the RAPIDS Accelerator leaves on the CPU when files are listed (list_files); in the
# GPU_FALLBACKS of the jobs that list files.
LISTING_FALLBACKS = [
    Known("FileSourceScanExec", "unsupported file format: org.apache.spark.sql.execution.datasources.binaryfile."
          "BinaryFileFormat", "imagefiles.py list_files: Spark's binaryFile source",
          "the files' bytes are read on the CPU (the plugin has no reader for arbitrary files) and decoded by "
          "OpenCV in the Python tasks; the GPU has nothing to do until the images are decoded"),
    Known("UnionExec", "unsupported data types in output: BinaryType", "imagefiles.py list_files (empty files, "
          "which Spark's scan skips); ingest_images/job.py labelled (a manifest's missing files)",
          "the plugin has no binary columns in a union; a row per such file, only when there are any",
          required=False),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "imagefiles.py empty_files: the listed paths",
          DRIVER_ROWS + "; only when the input holds empty files", columns=("path",), required=False),
    Known("ShuffleExchangeExec", "Columnar exchange without columnar children", "imagefiles.py empty_files: "
          "the listed paths against the scanned ones", "a shuffle of file paths, only when the input holds empty "
          "files", required=False),
]


def sniff(data: bytes) -> str | None:
    """The image format of these bytes by their signature (None: not one OpenCV reads here)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def truncation(data: bytes, fmt: str) -> str | None:
    """Why a JPEG or PNG is cut short (its end marker is missing), else None. libjpeg decodes a
    truncated JPEG anyway (grey below the cut, one warning), so the decoder's word is not enough."""
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "no end-of-image marker (FFD9): the file is cut short"
    if fmt == "png" and b"IEND" not in data[-12:]:
        return "no IEND chunk: the file is cut short"
    return None


def check(data: bytes | None) -> dict:
    """The FIELDS of one file's bytes known without decoding it: sha256 and format, or the reason
    (empty, not an image, truncated) and detail; reason None: worth decoding."""
    out = dict.fromkeys(FIELDS)
    data = bytes(data or b"")
    if not data:
        return {**out, "reason": EMPTY, "detail": "0 bytes"}
    out["sha256"] = hashlib.sha256(data).hexdigest()
    fmt = sniff(data)
    if fmt is None:
        return {**out, "reason": NOT_IMAGE, "detail": f"unknown signature {data[:8].hex()}"}
    out["format"] = fmt
    cut = truncation(data, fmt)
    if cut:
        return {**out, "reason": TRUNCATED, "detail": f"{fmt}: {cut}"}
    return out


def undecodable(fmt: str) -> dict:
    """The reason and detail of bytes OpenCV cannot decode."""
    import cv2

    return {"reason": UNDECODABLE, "detail": f"OpenCV {cv2.__version__} cannot decode this {fmt}"}


def inspect(data: bytes | None, min_size: int) -> dict:
    """The FIELDS of one file's bytes: format, width, height, channels and sha256 of a usable
    image (reason None), or the reason and detail of an unusable one."""
    import cv2

    out = check(data)
    if out["reason"]:
        return out
    fmt = out["format"]
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        return {**out, **undecodable(fmt)}
    height, width = pixels.shape[:2]
    out.update(width=int(width), height=int(height), channels=1 if pixels.ndim == 2 else int(pixels.shape[2]))
    if min(width, height) < min_size:
        return {**out, "reason": TOO_SMALL, "detail": f"{width}x{height}: a side under --min-size {min_size}"}
    return out


def inspect_udf(min_size: int):
    """A pandas UDF: (the bytes column, the file column of list_files) -> a struct of FIELDS (one
    OpenCV decode per file) and content: the bytes read from ``file`` where content was NULL."""
    from pyspark.sql.functions import pandas_udf

    schema = ("format string, width int, height int, channels int, sha256 string, reason string, detail string, "
              "content binary")

    @pandas_udf(schema)
    def inspect_files(contents: pd.Series, files: pd.Series) -> pd.DataFrame:
        import cv2

        cv2.setNumThreads(1)  # a task is one core's worth of work
        done = [inspect_read(c, f, min_size) for c, f in zip(contents, files)]
        out = pd.DataFrame([d for d, _ in done], columns=list(FIELDS))
        out["content"] = [b for _, b in done]
        return out.astype({"width": "Int32", "height": "Int32", "channels": "Int32"})

    return inspect_files


def scan_conf(spark: SparkSession, batch: int = IMAGES_PER_BATCH) -> dict[str, str]:
    """The session settings for a pass over image files: ``batch`` images per Arrow batch, files
    packed into tasks by their bytes, TASKS_PER_CORE tasks a core (more past MAX_TASK_BYTES a task)."""
    return {ARROW_BATCH: str(batch), "spark.sql.files.openCostInBytes": str(OPEN_COST),
            "spark.sql.files.maxPartitionBytes": str(MAX_TASK_BYTES),
            "spark.sql.files.minPartitionNum": str(TASKS_PER_CORE * spark.sparkContext.defaultParallelism)}


def list_files(spark: SparkSession, where: str, flag: str = "--input", lazy: bool = False) -> tuple[str, DataFrame]:
    """(``where`` as Hadoop spells it, every file under it, recursively: path, bytes, content,
    file). ``lazy`` and files the tasks can open themselves (reads_locally): content NULL and
    ``file`` the path to read (the JVM reading each file and handing its bytes to Python cost
    more than Python reading it); otherwise ``file`` NULL."""
    if not fs.exists(spark, where):
        raise InputError(f"{flag} {where} does not exist")
    root = fs.qualified(spark, where)
    scan = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(root)
    files = scan.select("path", F.col("length").alias("bytes"), "content").unionByName(empty_files(spark, scan, root))
    if lazy and reads_locally(spark, root):
        return root, files.select("path", "bytes", F.lit(None).cast("binary").alias("content"), F.col("path").alias("file"))
    return root, files.withColumn("file", F.lit(None).cast("string"))


def reads_locally(spark: SparkSession, root: str) -> bool:
    """Whether the Python tasks can open the files under ``root`` themselves: local files, and
    tasks on this machine (a local master)."""
    return root.startswith("file:") and spark.sparkContext.master.startswith("local")


def read_local(path: str) -> bytes | OSError:
    """The bytes of a file named as the listing names it (file:/a b), or why it cannot be read."""
    try:
        return fs.local_of(path).read_bytes()
    except OSError as exc:
        return exc


def inspect_read(content: bytes | None, file: str | None, min_size: int) -> tuple[dict, bytes | None]:
    """(inspect's FIELDS, the bytes read from ``file``): content given, or read from ``file`` here
    (an unreadable file is quarantined with its error, not a failed task)."""
    if content is not None or file is None:
        return inspect(content, min_size), None
    read = read_local(file)
    if isinstance(read, OSError):
        return {**dict.fromkeys(FIELDS), "reason": UNREADABLE, "detail": f"{type(read).__name__}: {read.strerror}"}, None
    return inspect(read, min_size), read


def empty_files(spark: SparkSession, scan: DataFrame, root: str) -> DataFrame:
    """The listed files Spark's scan skips, being empty (so they are quarantined, not lost): on a
    local disk found by their size (no Spark job: the count below cost 0.13 ms a file); elsewhere
    the listed paths against the scanned ones."""
    if root.startswith("file:"):
        return spark.createDataFrame([("file:" + p, 0, None) for p in _local_empty(fs.local_of(root))],
                                     "path string, bytes long, content binary")
    return listed_not_scanned(spark, scan)


def listed_not_scanned(spark: SparkSession, scan: DataFrame) -> DataFrame:
    """The files a binaryFile scan lists but yields no row for (its empty ones), as empty_files'
    rows; no join when the counts agree."""
    listed = _input_files(spark, scan)
    if len(listed) == scan.count():
        return spark.createDataFrame([], "path string, bytes long, content binary")
    every = spark.createDataFrame([(p,) for p in listed], "path string")
    return (every.join(scan.select("path"), "path", "left_anti")
            .select("path", F.lit(0).cast("long").alias("bytes"), F.lit(None).cast("binary").alias("content")))


def _local_empty(top) -> list[str]:
    """The empty files under a local directory that Spark's listing keeps (not _x, not .x)."""
    import os

    if os.path.isfile(top):
        return [str(top)] if os.path.getsize(top) == 0 else []
    out = []
    for folder, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if not fs.hidden(d)]
        paths = (os.path.join(folder, n) for n in names if not fs.hidden(n))
        out += [p for p in paths if os.path.getsize(p) == 0]
    return sorted(out)


def _input_files(spark: SparkSession, scan: DataFrame) -> list[str]:
    """The scan's files as its path column spells them (inputFiles: URIs, file:///a%20b; the path
    column: file:/a b)."""
    from urllib.parse import unquote

    return [("file:/" + p[len("file:///"):]) if p.startswith("file:///") else p for p in map(unquote, scan.inputFiles())]
