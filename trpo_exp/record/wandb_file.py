"""Read offline W&B runs (``wandb/offline-run-*/run-*.wandb``) without network or account.

File format, as written by wandb-core (the Go backend used since wandb 0.18) and
checked byte-for-byte against files produced by wandb 0.31:

* A 7-byte file header: ident ``b":W&B"``, a little-endian uint16 magic ``0xBEE1``
  (bytes ``e1 be``) and a uint8 version ``0``.
* Then a LevelDB log (``core/pkg/leveldb/record.go`` in wandb): the file is cut
  into 32 KiB blocks counted from offset 0, so the header lives inside block 0.
  Each block holds chunks with a 7-byte header ``crc32 (uint32 LE) | length
  (uint16 LE) | type (uint8)`` followed by ``length`` payload bytes.  Chunks never
  cross a block boundary; fewer than 7 bytes left in a block are zero padding.
* Unlike LevelDB (masked CRC-32C), the checksum is plain ``zlib.crc32`` (IEEE)
  over the type byte plus the payload, unmasked.
* Chunk types FULL=1, FIRST=2, MIDDLE=3, LAST=4 reassemble into one payload, which
  is a serialized ``wandb.proto.wandb_internal_pb2.Record``.

Damaged data is handled like LevelDB's reader: a chunk that fails its checks
discards the record being assembled and reading resumes at the next block
boundary with the next FULL/FIRST chunk.  Everything intact is returned and one
``warnings.warn`` per file summarises what was skipped.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2 as pb

__all__ = ["OfflineRun", "read_offline_run"]

FILE_IDENT = b":W&B"
FILE_MAGIC = 0xBEE1
FILE_VERSION = 0
_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
BLOCK_SIZE = 32 * 1024

_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4

# wandb stores its own bookkeeping (runtime, telemetry, ...) under this key in
# both config and summary; it is not part of what the user logged.
_INTERNAL_KEY = "_wandb"

# _chunk_error's verdict for a chunk cut off by the end of the file.
_TRUNCATED = "truncated"

# Cap on damage details repeated in the warning text; OfflineRun.warnings keeps all.
_MAX_WARNING_DETAILS = 5


@dataclass(frozen=True)
class OfflineRun:
    """Contents of one offline W&B run.

    Attributes:
        path: The ``.wandb`` file that was read.
        run_id: The run id (from the run record, else the header or file name).
        project, name, group: From the run record; ``None`` when not set.
        tags: Run tags, in the order given to ``wandb.init``.
        config: Final config with ``_wandb`` internals dropped. Later config
            records update earlier ones; dict values merge key by key into
            existing dicts, as wandb-core's run config does. Records hold raw
            values: the ``{"value": ...}`` wrapper exists only in the
            ``config.yaml`` wandb serialises for upload, so nothing is unwrapped
            (a user dict that happens to look like a wrapper stays intact).
        history: One dict per ``run.log`` row, in file order. Keys are as logged
            (``"train/kl"`` stays one key); keys of nested dicts logged via
            ``run.log({"a": {"b": 1}})`` are joined with ``"."`` (``"a.b"``).
            Rows include wandb's ``_step``, ``_runtime`` and ``_timestamp``.
        summary: Final summary (nested dicts stay nested), ``_wandb`` dropped.
        warnings: Human-readable descriptions of every skipped piece of data.
    """

    path: Path
    run_id: str
    project: str | None
    name: str | None
    group: str | None
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def read_offline_run(path: str | Path) -> OfflineRun:
    """Read an offline run from its ``offline-run-*`` directory or its ``.wandb`` file.

    Damaged or truncated files yield whatever is intact plus one ``UserWarning``.

    Raises:
        FileNotFoundError: ``path`` is missing, or a directory without a ``.wandb`` file.
        ValueError: The file does not start with a W&B log header.
    """
    wandb_file = _find_wandb_file(Path(path))
    data = wandb_file.read_bytes()
    _check_file_header(data, wandb_file)

    problems: list[str] = []
    builder = _RunBuilder(problems)
    for offset, payload in _iter_payloads(data, problems):
        record = _parse_record(payload, offset, problems)
        if record is not None:
            builder.add(record)

    run = builder.build(wandb_file)
    if problems:
        warnings.warn(_summarise(wandb_file, builder.records_read, problems), stacklevel=2)
    return run


# --------------------------------------------------------------------------- file level


def _find_wandb_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"No such offline run file or directory: {path}")
    candidates = sorted(path.glob("run-*.wandb"))
    if len(candidates) != 1:
        found = ", ".join(c.name for c in candidates) or "none"
        raise FileNotFoundError(f"Expected exactly one run-*.wandb file in {path}, found: {found}")
    return candidates[0]


def _check_file_header(data: bytes, path: Path) -> None:
    if len(data) < _FILE_HEADER.size:
        raise ValueError(f"{path} is not a W&B run file: only {len(data)} bytes long")
    ident, magic, version = _FILE_HEADER.unpack_from(data)
    if (ident, magic, version) != (FILE_IDENT, FILE_MAGIC, FILE_VERSION):
        raise ValueError(
            f"{path} is not a W&B run file: header {data[:_FILE_HEADER.size]!r}, "
            f"expected {_FILE_HEADER.pack(FILE_IDENT, FILE_MAGIC, FILE_VERSION)!r}"
        )


def _summarise(path: Path, records_read: int, problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:_MAX_WARNING_DETAILS])
    more = len(problems) - _MAX_WARNING_DETAILS
    if more > 0:
        shown += f"; and {more} more"
    return (
        f"{path}: damaged or truncated W&B file; read {records_read} intact records, "
        f"skipped {len(problems)} damaged part(s): {shown}"
    )


# -------------------------------------------------------------------------- chunk level


def _iter_payloads(data: bytes, problems: list[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, payload)`` for every intact record; append damage to ``problems``.

    ``offset`` is where the record's first chunk starts, for error messages.
    """
    pos = _FILE_HEADER.size
    parts: list[bytes] = []  # payload pieces of the record being reassembled
    record_start = -1
    while pos < len(data):
        block_end = (pos // BLOCK_SIZE + 1) * BLOCK_SIZE
        if block_end - pos < _CHUNK_HEADER.size:
            pos = block_end  # zero trailer: the writer never splits a chunk header
            continue
        error = _chunk_error(data, pos, block_end)
        if error == _TRUNCATED:
            problems.append(f"offset {pos}: file ends inside a chunk (truncated)")
            parts = []
            break
        if error:
            # As LevelDB does: the chunk's length field cannot be trusted, so
            # drop the partial record and resynchronise on the next block.
            lost = " and the record it belongs to" if parts else ""
            problems.append(f"offset {pos}: {error}; skipped to offset {block_end}{lost}")
            parts = []
            pos = block_end
            continue

        _, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        payload = data[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + length]
        if kind in (_FULL, _FIRST):
            if parts:
                problems.append(f"offset {record_start}: record never finished; dropped")
            parts, record_start = [payload], pos
        elif not parts:
            # Tail of a record whose head was skipped during resynchronisation.
            problems.append(f"offset {pos}: fragment of a lost record; dropped")
        else:
            parts.append(payload)
        pos += _CHUNK_HEADER.size + length

        if parts and kind in (_FULL, _LAST):
            yield record_start, b"".join(parts)
            parts = []

    if parts:
        problems.append(f"offset {record_start}: file ends inside a record (truncated)")


def _chunk_error(data: bytes, pos: int, block_end: int) -> str:
    """Return why the chunk at ``pos`` is unusable: "" if fine, ``_TRUNCATED`` at EOF."""
    if pos + _CHUNK_HEADER.size > len(data):
        return _TRUNCATED
    crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
    end = pos + _CHUNK_HEADER.size + length
    if kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
        return f"invalid chunk type {kind}"
    if end > block_end:
        return f"chunk length {length} overflows its block"
    if end > len(data):
        return _TRUNCATED
    # The checksum covers the type byte (last header byte) and the payload.
    if zlib.crc32(data[pos + _CHUNK_HEADER.size - 1 : end]) != crc:
        return "checksum mismatch"
    return ""


def _parse_record(payload: bytes, offset: int, problems: list[str]) -> pb.Record | None:
    record = pb.Record()
    try:
        record.ParseFromString(payload)
    except DecodeError as exc:
        problems.append(f"offset {offset}: record is not a valid protobuf ({exc}); dropped")
        return None
    return record


# ------------------------------------------------------------------------- record level


class _RunBuilder:
    """Folds records, in file order, into the final run state."""

    def __init__(self, problems: list[str]) -> None:
        self._problems = problems
        self._run: pb.RunRecord | None = None
        self._stream_id = ""
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.records_read = 0

    def add(self, record: pb.Record) -> None:
        self.records_read += 1
        self._stream_id = self._stream_id or record._info.stream_id
        kind = record.WhichOneof("record_type")
        if kind == "run":
            self._run = record.run
            self._apply(self.config, record.run.config.update, record.run.config.remove)
        elif kind == "config":
            self._apply(self.config, record.config.update, record.config.remove)
        elif kind == "summary":
            self._apply(self.summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            self.history.append(self._history_row(record.history))
        # Other record types (telemetry, files, output, exit, ...) carry nothing we expose.

    def build(self, path: Path) -> OfflineRun:
        run = self._run
        run_id = (run.run_id if run else "") or self._stream_id or _id_from_filename(path)
        return OfflineRun(
            path=path,
            run_id=run_id,
            project=(run.project or None) if run else None,
            name=(run.display_name or None) if run else None,
            group=(run.run_group or None) if run else None,
            tags=list(run.tags) if run else [],
            config={k: v for k, v in self.config.items() if k != _INTERNAL_KEY},
            history=self.history,
            summary={k: v for k, v in self.summary.items() if k != _INTERNAL_KEY},
            warnings=list(self._problems),
        )

    def _apply(self, tree: dict[str, Any], updates: Sequence[Any], removes: Sequence[Any]) -> None:
        for item in updates:
            _set_path(tree, _key_path(item), self._decode(item))
        for item in removes:
            _remove_path(tree, _key_path(item))

    def _history_row(self, history: pb.HistoryRecord) -> dict[str, Any]:
        row = {".".join(_key_path(item)): self._decode(item) for item in history.item}
        if "_step" not in row and history.HasField("step"):
            row["_step"] = history.step.num
        return row

    def _decode(self, item: Any) -> Any:
        # Python's json accepts the NaN/Infinity tokens wandb writes for non-finite floats.
        try:
            return json.loads(item.value_json)
        except ValueError:
            self._problems.append(f"key {_key_path(item)}: undecodable JSON kept as text")
            return item.value_json


def _key_path(item: Any) -> list[str]:
    """Config/summary/history items name their key in ``nested_key`` or, older style, ``key``."""
    return list(item.nested_key) or [item.key]


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    # Mirrors wandb-core's pathtree.SetSubtree: a dict value merges into an
    # existing dict key by key, anything else replaces what was there.
    *parents, last = path
    for key in parents:
        tree = _child_dict(tree, key)
    if isinstance(value, dict):
        target = _child_dict(tree, last)  # an empty dict is still a value the user set
        for key, sub in value.items():
            _set_path(target, [key], sub)
    else:
        tree[last] = value


def _child_dict(tree: dict[str, Any], key: str) -> dict[str, Any]:
    child = tree.get(key)
    if not isinstance(child, dict):
        child = tree[key] = {}
    return child


def _remove_path(tree: dict[str, Any], path: list[str]) -> None:
    *parents, last = path
    node: Any = tree
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return  # nothing there to remove
    node.pop(last, None)


def _id_from_filename(path: Path) -> str:
    # wandb names the file run-<id>.wandb.
    return path.stem.removeprefix("run-")
