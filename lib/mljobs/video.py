"""Video files decoded with OpenCV inside Spark tasks, frame by frame: the plumbing of the frames
job, kept out of it so a job that scores videos (``detect --videos``) reads videos the same way.

Decisions (docs/frames.md says the same to users):

- **One task per video.** OpenCV's FFmpeg backend seeks to key frames only (``CAP_PROP_POS_FRAMES``
  is approximate in an inter-coded stream), so exact 1-based frame numbers need one sequential
  decode from the first frame. Videos are listed on the driver (names and sizes only) and handed
  out largest first, one per task; a long video is one long task.
- **Bounded memory.** A task holds one decoded frame at a time; encoded frames leave it in Arrow
  batches of at most ``BATCH_FRAMES`` frames or ``BATCH_BYTES`` bytes. No frame reaches the driver.
- **Arrow, not pandas.** The tasks are ``mapInArrow``: a batch is built from plain column lists
  straight into a ``pyarrow.RecordBatch`` (no DataFrame of dicts per batch, no pandas -> Arrow
  conversion, no pandas import in the workers). With a local master and a local staging folder,
  ``write_staged`` has the tasks write those batches to Parquet themselves (no hand-over to the JVM).
- **A local file.** ``cv2.VideoCapture`` opens paths, not streams. Local paths (``file:``) are
  opened where they are (local mode, or a mount every executor sees). ``s3://``/``s3a://`` and
  ``hdfs://`` are streamed by pyarrow's file system (8 MB pieces) into a task-local temporary file,
  removed when the video is done: Hadoop's FileSystem is on the JVM side, out of a Python task's
  reach, and Spark's binaryFile source would hold a whole video in one row (2 GB at most).
  pyarrow's S3 client takes credentials from the default AWS chain (the instance profile on EMR)
  and an endpoint from ``AWS_ENDPOINT_URL``.
- **Why a video is unusable** (one of the reasons below, with a detail). A video whose decoding
  stops before the frame count its container declares keeps the frames decoded and is reported
  as ``cut short``.
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mljobs.uris import local_of, scheme_of

SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".ogv")
FORMATS = ("jpeg", "png")
# The quarantine's reasons, fixed words (the summary counts them); the detail says more.
EMPTY, NOT_VIDEO, CANNOT_OPEN, NO_FRAMES = "empty file", "not a video", "cannot open", "no frames"
CUT_SHORT, CANNOT_READ = "cut short", "cannot read"
BATCH_FRAMES, BATCH_BYTES = 32, 32 << 20
COPY_CHUNK = 8 << 20
MAX_TASKS = 10_000
DECODE_THREADS = 1  # a task is one core's worth of work (FFmpeg's own default is every core)
FRAME_COLUMNS = ("video", "path", "frame", "timestamp_ms", "width", "height", "format", "content", "sha256")
REPORT_COLUMNS = ("bytes", "declared", "decoded", "kept", "reason", "detail")
SCHEMA = ("video string, path string, frame int, timestamp_ms double, width int, height int, format string, "
          "content binary, sha256 string, bytes long, declared int, decoded int, kept int, reason string, "
          "detail string")
_GLOB = re.compile(r"[*?\[{]")


@dataclass(frozen=True)
class FrameSpec:
    """Which frames are kept and how they are stored: every ``every``-th frame from the first,
    resized to ``size`` (width, height; None: as decoded) with INTER_AREA, encoded as ``format``."""

    every: int = 1
    size: tuple[int, int] | None = None
    format: str = "jpeg"
    jpeg_quality: int = 95


def video_name(path: str) -> str:
    """The name train_labels.csv gives a video: its file name (``57583_000082_Endzone.mp4``)."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def sniff(head: bytes) -> str | None:
    """The container of these first bytes by its signature (None: no video container known here)."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4/mov"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska/webm"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "mpeg-ts"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf/wmv"
    return None


# ---- on the driver: which videos


def list_videos(spark, where: str) -> list[tuple[str, int]]:
    """(path as Hadoop names it, bytes) of the videos at ``where``: a file, a glob (every match),
    or a directory walked recursively (files with a video suffix; others are not videos to list)."""
    from mljobs import fs
    from mljobs.errors import InputError
    from mljobs.session import env_of
    from mljobs.uris import normalize_path

    path = normalize_path(where, env_of(spark))
    found = {}
    for top, st in fs.list_files(spark, path, glob=bool(_GLOB.search(path))):
        name = st.getPath().toString()
        if not top.isDirectory() or name.lower().endswith(SUFFIXES):
            found[name] = int(st.getLen())
    if not found:
        raise InputError(f"no video files ({', '.join(SUFFIXES)}) under {where}")
    return sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))


def decoded(spark, videos: list[tuple[str, int]], spec: FrameSpec):
    """A DataFrame of SCHEMA: a row per kept frame (reason NULL, frame set) and a report row per
    video (frame NULL: its declared, decoded and kept frame counts, and the reason it is unusable
    or cut short, else NULL). Decoded lazily, in tasks, a video per task (largest first)."""
    tasks, dealt = _dealt(videos)
    listing = spark.sparkContext.parallelize(dealt, tasks)
    return spark.createDataFrame(listing, "path string, bytes long").mapInArrow(decode_videos(spec), SCHEMA)


def write_staged(spark, videos: list[tuple[str, int]], spec: FrameSpec, folders: tuple[str, str],
                 lineage: dict) -> None:
    """``decoded`` written by the tasks themselves, where the two ``folders`` (frames, reports)
    are local paths every task can write (a ``local[...]`` master): each task writes its frames
    to ``<frames>/part-<task>.parquet`` and its videos' reports to ``<reports>/part-<task>.parquet``
    (the columns and types of Spark's write of ``decoded``, ``lineage`` columns included), so no
    frame's bytes cross into the JVM. Returns when every task is done."""
    tasks, dealt = _dealt(videos)
    spark.sparkContext.parallelize(dealt, tasks).foreachPartition(
        lambda rows: _write_task(list(rows), spec, folders, lineage))


def _dealt(videos: list[tuple[str, int]]) -> tuple[int, list]:
    """(tasks, the videos in the order that gives each task its share of the large ones)."""
    tasks = max(1, min(len(videos), MAX_TASKS))
    # parallelize cuts the list into consecutive slices: dealt round-robin, each task gets its share
    # of the large videos when tasks take several
    return tasks, [videos[j] for i in range(tasks) for j in range(i, len(videos), tasks)]


# ---- in the tasks


def staged_schema(lineage: dict):
    """arrow_schema plus the lineage columns (ingested_at: a UTC timestamp, the others strings)."""
    import pyarrow as pa

    extra = [(k, pa.timestamp("us", tz="UTC") if k == "ingested_at" else pa.string()) for k in lineage]
    return pa.schema(list(arrow_schema()) + [pa.field(k, t) for k, t in extra])


def _write_task(listing: list, spec: FrameSpec, folders: tuple[str, str], lineage: dict) -> None:
    """One task of ``write_staged``: its videos decoded into its two Parquet files."""
    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    cv2.setNumThreads(DECODE_THREADS)
    from pyspark import TaskContext

    schema, reports, writer = staged_schema(lineage), [], None
    name = f"part-{TaskContext.get().partitionId():05d}.parquet"
    try:
        for path, size in listing:
            for batch in video_batches(path, int(size), spec):
                batch = _with_lineage(batch, lineage, schema)
                if batch.column("frame").null_count:  # frame NULL: the video's report
                    reports.append(batch)
                    continue
                if writer is None:
                    Path(folders[0]).mkdir(parents=True, exist_ok=True)
                    writer = pq.ParquetWriter(str(Path(folders[0], name)), schema, compression="none",
                                              use_dictionary=["video", "path", "format"],
                                              write_statistics=["video", "frame"])
                writer.write_batch(batch)
    finally:
        if writer is not None:
            writer.close()
    Path(folders[1]).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_batches(reports, schema), str(Path(folders[1], name)))


def _with_lineage(batch, lineage: dict, schema):
    import pyarrow as pa

    n = batch.num_rows
    extra = [pa.array([v] * n, schema.field(k).type) for k, v in lineage.items()]
    return pa.RecordBatch.from_arrays(list(batch.columns) + extra, schema=schema)


def decode_videos(spec: FrameSpec):
    """mapInArrow's function: (path, bytes) rows -> the frames and the report of each video."""

    def decode_batches(listings):
        import cv2

        cv2.setNumThreads(1)
        for listing in listings:
            for path, size in zip(listing.column("path").to_pylist(), listing.column("bytes").to_pylist()):
                yield from video_batches(path, int(size), spec)

    return decode_batches


def video_batches(path: str, size: int, spec: FrameSpec):
    """One video's frames, in bounded ``pyarrow.RecordBatch``es of SCHEMA, then its report row."""
    from mljobs.errors import error_text

    base = {"video": video_name(path), "path": path}
    if size == 0:
        yield _report(base, size, reason=EMPTY, detail="0 bytes")
        return
    try:
        with local_copy(path) as local:
            yield from _local_batches(local, base, size, spec)
    except OSError as exc:  # a remote read failed, the file went away; pyarrow's errors are OSErrors
        yield _report(base, size, reason=CANNOT_READ, detail=error_text(exc)[:500])


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[Path]:
    """A local file holding the video: a local path itself; a remote one streamed by pyarrow into a
    temporary directory that is removed afterwards."""
    scheme = scheme_of(path)
    if scheme in (None, "file"):
        yield local_of(path)
        return
    from pyarrow import fs as pafs

    uri = "s3://" + path.split("://", 1)[1] if scheme in ("s3a", "s3n") else path
    filesystem, inside = pafs.FileSystem.from_uri(uri)
    folder = tempfile.mkdtemp(prefix="mljobs-video-")
    try:
        local = Path(folder) / video_name(path)
        with filesystem.open_input_stream(inside) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def open_video(local: Path):
    """cv2.VideoCapture on a local file through FFmpeg, decoding on DECODE_THREADS threads."""
    import cv2

    return cv2.VideoCapture(str(local), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, DECODE_THREADS])


def read_frames(cap, every: int, counts: dict) -> Iterator[tuple[int, float, "object"]]:
    """(1-based frame number, timestamp in ms, BGR pixels) of every ``every``-th frame from the
    first; the frames between are grabbed (decoded) but not converted. ``counts['decoded']``
    follows the decoding."""
    import cv2

    number = 0
    while cap.grab():
        number += 1
        counts["decoded"] = number
        if (number - 1) % every:
            continue
        ok, pixels = cap.retrieve()
        if not ok or pixels is None:
            return
        yield number, float(cap.get(cv2.CAP_PROP_POS_MSEC)), pixels


def encode(pixels, spec: FrameSpec) -> dict:
    """width, height, format, content (encoded bytes) and sha256 of a frame as stored."""
    import cv2

    if spec.size and (pixels.shape[1], pixels.shape[0]) != tuple(spec.size):
        pixels = cv2.resize(pixels, tuple(spec.size), interpolation=cv2.INTER_AREA)
    if spec.format == "png":
        ok, buf = cv2.imencode(".png", pixels)
    else:
        ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(spec.jpeg_quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {pixels.shape} frame as {spec.format}")
    data = buf.tobytes()
    return {"width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "format": spec.format,
            "content": data, "sha256": hashlib.sha256(data).hexdigest()}


def _local_batches(local: Path, base: dict, size: int, spec: FrameSpec):
    import cv2

    cap = open_video(local)
    try:
        if not cap.isOpened():
            reason, detail = why_not_opened(local)
            yield _report(base, size, reason=reason, detail=detail)
            return
        declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        counts = {"decoded": 0}
        batch = _Columns(base)
        kept = 0
        for number, ms, pixels in read_frames(cap, spec.every, counts):
            batch.add(number, ms, encode(pixels, spec))
            kept += 1
            if batch.frames >= BATCH_FRAMES or batch.held >= BATCH_BYTES:
                yield batch.record_batch()
                batch = _Columns(base)
        if batch.frames:
            yield batch.record_batch()
        reason, detail = verdict(declared, counts["decoded"], kept)
        yield _report(base, size, declared=declared, decoded=counts["decoded"], kept=kept, reason=reason, detail=detail)
    finally:
        cap.release()


def why_not_opened(local: Path) -> tuple[str, str]:
    """(reason, detail) of a file OpenCV cannot open: not a video by its first bytes, or a video
    container FFmpeg cannot read (cut short, corrupt, or a codec this build lacks)."""
    import cv2

    with open(local, "rb") as f:
        head = f.read(512)
    kind = sniff(head)
    if kind is None:
        return NOT_VIDEO, f"unknown signature {head[:12].hex()}"
    return CANNOT_OPEN, (f"{kind} container, but OpenCV {cv2.__version__} (FFmpeg) cannot open it: cut short, "
                         f"corrupt, or a codec this build lacks")


def verdict(declared: int, decoded: int, kept: int) -> tuple[str | None, str]:
    """(reason or None, detail) of a video that opened. Cut short: more than 1 frame (and 1 %) fewer
    decoded than declared; the slack allows containers whose count is estimated from the duration."""
    if decoded == 0:
        return NO_FRAMES, f"opened, but no frame decodes (the container declares {declared})"
    if declared and declared - decoded > max(1, declared // 100):
        return CUT_SHORT, (f"decoding stopped at frame {decoded} of the {declared} the container declares; "
                           f"the {kept} frames kept before it are in the table")
    return None, f"{decoded} frames decoded, {kept} kept"


def arrow_schema():
    """SCHEMA as a pyarrow schema (the types mapInArrow expects back)."""
    import pyarrow as pa

    return pa.schema([("video", pa.string()), ("path", pa.string()), ("frame", pa.int32()),
                      ("timestamp_ms", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
                      ("format", pa.string()), ("content", pa.binary()), ("sha256", pa.string()),
                      ("bytes", pa.int64()), ("declared", pa.int32()), ("decoded", pa.int32()),
                      ("kept", pa.int32()), ("reason", pa.string()), ("detail", pa.string())])


class _Columns:
    """A batch of one video's frames as column lists (the report columns all NULL)."""

    def __init__(self, base: dict):
        self.base = base
        self.frames = self.held = 0
        self.cols: dict[str, list] = {c: [] for c in ("frame", "timestamp_ms", "width", "height", "format", "content",
                                                      "sha256")}

    def add(self, number: int, ms: float, encoded: dict) -> None:
        cols = self.cols
        cols["frame"].append(number)
        cols["timestamp_ms"].append(ms)
        for c in ("width", "height", "format", "content", "sha256"):
            cols[c].append(encoded[c])
        self.frames += 1
        self.held += len(encoded["content"])

    def record_batch(self):
        import pyarrow as pa

        schema, n = arrow_schema(), self.frames
        arrays = []
        for field in schema:
            if field.name in self.base:
                arrays.append(pa.array([self.base[field.name]] * n, field.type))
            elif field.name in self.cols:
                arrays.append(pa.array(self.cols[field.name], field.type))
            else:
                arrays.append(pa.nulls(n, field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _report(base: dict, size: int, **fields):
    """A one-row RecordBatch of SCHEMA: a video's report (frame NULL)."""
    import pyarrow as pa

    row = {**base, "bytes": size, **fields}
    schema = arrow_schema()
    return pa.RecordBatch.from_arrays([pa.array([row.get(f.name)], f.type) for f in schema], schema=schema)
