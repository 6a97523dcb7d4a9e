"""Inspect AI `.eval` logs: zip archives with `header.json` (or `_journal/start.json` while an eval
runs) and one `samples/ID_epoch_N.json` entry per sample and epoch.

Entries are compressed with deflate (older Inspect) or zstd (method 93, Inspect since 2025), which
Python's zipfile reads only from 3.14 on; zstd entries are decompressed with pyarrow's codec,
which memkit has already. Each entry's bytes pass the redactor before they are parsed.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional

import orjson
import pyarrow as pa

from memkit.stores.formats import ReadContext, RecordError, RecordReader
from memkit.stores.formats._checks import json_error, redact_entries
from memkit.stores.formats.inspect_log import is_eval_spec, run_of_sample
from memkit.stores.records import REJECT_RAW_LIMIT, Record, Redactions

ZSTD = 93
MAX_ENTRY = 1 << 30  # an entry that claims to inflate beyond this is rejected (zip bombs)
HEADERS = ("header.json", "_journal/start.json")


class CorruptArchive(OSError):
    "The file is not a zip archive that can be read."


def _is_eval_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(h in names for h in HEADERS) or any(n.startswith("samples/") for n in names)


def read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes; RecordError when they cannot be had (unknown method, bad CRC, too big)."""
    if info.file_size > MAX_ENTRY:
        raise RecordError(f"entry claims {info.file_size} bytes, more than the {MAX_ENTRY} allowed")
    if info.compress_type != ZSTD:
        try:
            return z.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError) as e:
            raise RecordError(f"cannot read the entry ({e})") from None
    try:
        fp = z.fp
        fp.seek(info.header_offset)
        header = fp.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise RecordError("cannot read the entry (bad local header)")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fp.seek(info.header_offset + 30 + name_len + extra_len)
        compressed = fp.read(info.compress_size)
        data = pa.decompress(compressed, decompressed_size=info.file_size, codec="zstd").to_pybytes()
    except (pa.ArrowException, OSError, struct.error, ValueError) as e:
        raise RecordError(f"cannot read the entry (zstd: {e})") from None
    if zlib.crc32(data) != info.CRC:
        raise RecordError("cannot read the entry (CRC mismatch)")
    return data


def _parse(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RecordError(json_error(data, e)) from None


class InspectEvalReader(RecordReader):
    name = "inspect-eval"
    version = "1"
    priority = 20
    binary = True
    description = "Inspect AI .eval log (zip of header.json + samples/*.json); one run per sample and epoch"

    def matches(self, record: Any) -> bool:
        return False

    def matches_path(self, path: Path) -> bool:
        return path.suffix.lower() == ".eval" or _is_eval_zip(path)

    def read_path(self, path: Path, ctx: ReadContext, redactions: Redactions) -> Iterator[tuple[Record, Any]]:
        try:
            z = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, ValueError) as e:
            raise CorruptArchive(f"not a readable .eval archive ({e})") from None
        with z:
            infos = {i.filename: i for i in z.infolist()}
            spec: Optional[dict] = None
            for name in HEADERS:
                if name in infos:
                    try:
                        header = _parse(redact_entries(redactions, [read_entry(z, infos[name])], [name])[0])
                    except RecordError as e:
                        yield Record(name, None), RecordError(f"{name}: {e}")
                        continue
                    if isinstance(header, dict) and is_eval_spec(header.get("eval")):
                        spec = header["eval"]
                        break
                    yield Record(name, None), RecordError(f"{name}: no 'eval' with task and model")
            if spec is None:
                if not any(n.startswith("samples/") for n in infos):
                    raise CorruptArchive("not an Inspect .eval archive (no header.json and no samples)")
                spec = {}  # the samples are still worth reading
            for name, info in infos.items():
                if not name.startswith("samples/") or not name.endswith(".json"):
                    continue
                try:
                    data = redact_entries(redactions, [read_entry(z, info)], [name])[0]
                except RecordError as e:
                    yield Record(name, None), e
                    continue
                try:
                    sample = _parse(data)
                except RecordError as e:
                    yield Record(name, None, data=data[:REJECT_RAW_LIMIT]), e
                    continue
                yield run_of_sample(name, None, sample, spec, ctx, data)


READER = InspectEvalReader()
