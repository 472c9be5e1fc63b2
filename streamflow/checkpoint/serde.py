"""Encoding of state snapshots into checkpoint bytes: orjson first, pickle as fallback.

Every encoded value starts with a one-byte format tag so :func:`decode` needs no side
information:

- ``b"J"``: orjson (``OPT_NON_STR_KEYS``). Fast, portable, readable by any language.
- ``b"P"``: pickle protocol 5 of the whole object. Used only when orjson cannot represent
  the value faithfully (sets, bytes, arbitrary objects, dataclasses, datetimes, str
  subclasses, ints beyond 64 bits, NaN and infinities). Such checkpoints are only
  readable by Python with the same classes importable; the first time a type forces
  the fallback the process logs a WARNING naming it.

JSON is not a round trip for every value orjson accepts; state restore code must expect:

- tuples come back as lists (also tuples nested in values);
- non-str dict keys (int, float, bool, None) come back as str (``{1: x}`` -> ``{"1": x}``);
  tuple keys are not JSON-encodable and force the pickle fallback;
- enum members come back as their value, UUIDs as str.

Dataclasses, datetimes and str/int/dict/list subclasses are deliberately *not* left to
orjson (which would turn them into plain dicts/strings without a word) but pickled.
NaN and infinities, which orjson silently writes as ``null``, are detected and pickled.

Checkpoint directories are trusted input: decoding a ``P`` value runs pickle, so never
point a job at checkpoints from an untrusted source.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Any

import orjson

from streamflow.errors import CheckpointCorruptedError, CheckpointError

__all__ = ["JSON_TAG", "PICKLE_TAG", "decode", "encode"]

log = logging.getLogger(__name__)

JSON_TAG = b"J"
PICKLE_TAG = b"P"

_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)

# Type names that already produced the fallback warning in this process: one WARNING
# per type, not one per checkpoint.
_warned: set[str] = set()


class _Unencodable(TypeError):
    """Raised from orjson's ``default`` hook to carry the offending type out."""

    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


def _refuse(value: Any) -> Any:
    raise _Unencodable(_type_name(value))


def _type_name(value: Any) -> str:
    cls = type(value)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _has_non_finite(value: Any) -> bool:
    """True when a float NaN or infinity hides in ``value`` (orjson would write ``null``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def encode(obj: Any) -> bytes:
    """Encode a state snapshot; orjson when faithful, otherwise pickle (see module doc)."""
    try:
        data = orjson.dumps(obj, default=_refuse, option=_ORJSON_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError, chained to _Unencodable from _refuse
        return _pickle(obj, _describe_orjson_error(exc))
    # orjson writes NaN/inf as null; only then is the (slower) scan worth doing.
    if b"null" in data and _has_non_finite(obj):
        return _pickle(obj, "float (NaN or infinity)")
    return JSON_TAG + data


def _describe_orjson_error(exc: TypeError) -> str:
    for cause in (exc, exc.__cause__):
        if isinstance(cause, _Unencodable):
            return cause.type_name
    text = str(exc)
    if "64-bit" in text:
        return "int (beyond 64 bits)"
    if "Dict key" in text:
        return "dict key (e.g. tuple)"
    return f"value orjson refused ({text})"


def _pickle(obj: Any, type_name: str) -> bytes:
    if type_name not in _warned:
        _warned.add(type_name)
        log.warning(
            "state of type %s is not JSON-encodable; stored with pickle: such checkpoints "
            "are only readable by Python with the same classes importable",
            type_name,
        )
    return PICKLE_TAG + pickle.dumps(obj, protocol=5)


def decode(data: bytes) -> Any:
    """Decode bytes written by :func:`encode`.

    Raises:
        CheckpointCorruptedError: the tag is unknown or the payload does not parse.
        CheckpointError: a pickled value names a class that cannot be imported here.
    """
    tag, payload = data[:1], data[1:]
    if tag == JSON_TAG:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise CheckpointCorruptedError(
                f"state bytes tagged JSON do not parse ({exc}); the checkpoint is damaged, "
                "restore from an earlier checkpoint or savepoint",
                checkpoint_id=None,
                file=None,
            ) from exc
    if tag == PICKLE_TAG:
        try:
            return pickle.loads(payload)
        except (ImportError, AttributeError) as exc:
            raise CheckpointError(
                f"state was stored with pickle and needs a class that cannot be imported "
                f"here ({exc}); run with the same code (modules and classes) that wrote it"
            ) from exc
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise CheckpointCorruptedError(
                f"state bytes tagged pickle do not unpickle ({exc!r}); the checkpoint is "
                "damaged, restore from an earlier checkpoint or savepoint",
                checkpoint_id=None,
                file=None,
            ) from exc
    raise CheckpointCorruptedError(
        f"state bytes start with unknown format tag {tag!r} (expected {JSON_TAG!r} or "
        f"{PICKLE_TAG!r}); the checkpoint is damaged or was not written by streamflow",
        checkpoint_id=None,
        file=None,
    )
