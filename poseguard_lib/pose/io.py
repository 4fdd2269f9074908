"""Pose files: one pose or a sequence of poses as YAML or JSON, validated on the way in.

Layout (YAML shown; JSON is the same structure)::

    frames:                         # a sequence; a single pose file has the part keys at top level
      - body: {skeleton: openpose_body_18, keypoints: [[x, y, score], ...]}
        hands:                      # optional: (left, right)
          - {skeleton: hand_21, keypoints: [...]}
          - {skeleton: hand_21, keypoints: [...]}
        face: {skeleton: face_68, keypoints: [...]}   # optional

``skeleton`` is the name of a built-in skeleton or an inline definition (``name``,
``keypoints``, ``edges``, ``edge_colors``, ``keypoint_colors``, ``style``) so non-human
skeleton graphs travel with their poses. A keypoint row is ``[x, y]`` (score 1) or
``[x, y, score]``. Every error names the file and where in it the problem is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from poseguard_lib.io import atomic_path
from poseguard_lib.pose.skeleton import (
    FACE_68,
    HAND_21,
    OPENPOSE_BODY_18,
    Keypoints,
    Pose,
    PoseError,
    PoseSequence,
    Skeleton,
)

BUILTIN_SKELETONS = {s.name: s for s in (OPENPOSE_BODY_18, HAND_21, FACE_68)}
_SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class PoseFileError(PoseError):
    """A pose file that cannot be read; the message names the file and the problem."""


# --- plain data <-> poses ----------------------------------------------------------------
def _skeleton_to_data(skeleton: Skeleton) -> str | dict:
    if BUILTIN_SKELETONS.get(skeleton.name) == skeleton:
        return skeleton.name
    return {
        "name": skeleton.name,
        "keypoints": list(skeleton.keypoints),
        "edges": [list(e) for e in skeleton.edges],
        "edge_colors": [list(c) for c in skeleton.edge_colors],
        "keypoint_colors": [list(c) for c in skeleton.keypoint_colors],
        "style": skeleton.style,
    }


def _skeleton_from_data(data: Any, where: str) -> Skeleton:
    if isinstance(data, str):
        if data not in BUILTIN_SKELETONS:
            raise PoseError(f"{where}: unknown skeleton {data!r}; built-in: {sorted(BUILTIN_SKELETONS)}")
        return BUILTIN_SKELETONS[data]
    if not isinstance(data, dict):
        raise PoseError(f"{where}: skeleton must be a name or a mapping, got {type(data).__name__}")
    try:
        return Skeleton(
            name=str(data["name"]),
            keypoints=tuple(str(k) for k in data["keypoints"]),
            edges=tuple((int(a), int(b)) for a, b in data["edges"]),
            edge_colors=tuple(tuple(int(v) for v in c) for c in data["edge_colors"]),
            keypoint_colors=tuple(tuple(int(v) for v in c) for c in data["keypoint_colors"]),
            style=data.get("style", "graph"),
        )
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, PoseError):
            raise PoseError(f"{where}: {err}") from None
        raise PoseError(f"{where}: malformed skeleton definition ({type(err).__name__}: {err})") from None


def _keypoints_to_data(part: Keypoints, decimals: int | None) -> dict:
    rows = [[float(x), float(y), float(s)] for (x, y), s in zip(part.xy, part.scores)]
    if decimals is not None:
        rows = [[round(v, decimals) for v in row] for row in rows]
    return {"skeleton": _skeleton_to_data(part.skeleton), "keypoints": rows}


def _keypoints_from_data(data: Any, where: str) -> Keypoints:
    if not isinstance(data, dict) or "keypoints" not in data or "skeleton" not in data:
        raise PoseError(f"{where}: expected a mapping with 'skeleton' and 'keypoints'")
    skeleton = _skeleton_from_data(data["skeleton"], f"{where}.skeleton")
    rows = data["keypoints"]
    if not isinstance(rows, list):
        raise PoseError(f"{where}.keypoints: expected a list of [x, y] or [x, y, score] rows")
    xy, scores = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) not in (2, 3) or not all(_is_number(v) for v in row):
            raise PoseError(f"{where}.keypoints[{i}]: expected [x, y] or [x, y, score] numbers, got {row!r}")
        xy.append([float(row[0]), float(row[1])])
        scores.append(float(row[2]) if len(row) == 3 else 1.0)
    try:
        return Keypoints(skeleton, np.asarray(xy, dtype=np.float64).reshape(-1, 2), np.asarray(scores))
    except PoseError as err:
        raise PoseError(f"{where}: {err}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pose_to_data(pose: Pose, decimals: int | None = None) -> dict:
    """Plain (YAML/JSON-ready) data of a pose; ``decimals`` rounds coordinates and scores."""
    data: dict[str, Any] = {"body": _keypoints_to_data(pose.body, decimals)}
    if pose.hands:
        data["hands"] = [_keypoints_to_data(h, decimals) for h in pose.hands]
    if pose.face is not None:
        data["face"] = _keypoints_to_data(pose.face, decimals)
    return data


def pose_from_data(data: Any, where: str = "pose") -> Pose:
    """Validate plain data into a :class:`Pose`; errors start with ``where``."""
    if not isinstance(data, dict):
        raise PoseError(f"{where}: expected a mapping with a 'body', got {type(data).__name__}")
    unknown = set(data) - {"body", "hands", "face"}
    if unknown:
        raise PoseError(f"{where}: unknown keys {sorted(unknown)}; allowed: body, hands, face")
    if "body" not in data:
        raise PoseError(f"{where}: missing 'body'")
    hands = data.get("hands", [])
    if not isinstance(hands, list):
        raise PoseError(f"{where}.hands: expected a list (left, right)")
    face = data.get("face")
    return Pose(
        body=_keypoints_from_data(data["body"], f"{where}.body"),
        hands=tuple(_keypoints_from_data(h, f"{where}.hands[{i}]") for i, h in enumerate(hands)),
        face=None if face is None else _keypoints_from_data(face, f"{where}.face"),
    )


def sequence_to_data(sequence: PoseSequence, decimals: int | None = None) -> dict:
    return {"frames": [pose_to_data(f, decimals) for f in sequence.frames]}


def sequence_from_data(data: Any, where: str = "pose sequence") -> PoseSequence:
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise PoseError(f"{where}: expected a mapping with a 'frames' list")
    if not data["frames"]:
        raise PoseError(f"{where}: pose sequence is empty (no frames)")
    frames = tuple(pose_from_data(f, f"{where}: frames[{i}]") for i, f in enumerate(data["frames"]))
    try:
        return PoseSequence(frames)
    except PoseError as err:
        raise PoseError(f"{where}: {err}") from None


# --- files ---------------------------------------------------------------------------------
# libyaml's C parser and emitter when PyYAML was built with it: catalogue files are large.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FlowRowsDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Writes lists of scalars on one line ([x, y, score]) and everything else in block style."""


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    flow = all(not isinstance(v, (list, dict)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_FlowRowsDumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    """YAML text with one keypoint row per line, keys kept in insertion order."""
    return yaml.dump(data, Dumper=_FlowRowsDumper, sort_keys=False, width=120)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (plain data only)."""
    return yaml.load(text, Loader=_SafeLoader)


def _format_of(path: Path) -> str:
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise PoseFileError(f"{path}: unsupported pose file type {path.suffix!r}; use .json, .yaml or .yml") from None


def _read_data(path: str | os.PathLike) -> tuple[Path, Any]:
    path = Path(path)
    fmt = _format_of(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise PoseFileError(f"{path}: cannot read pose file ({err.strerror})") from None
    try:
        return path, (json.loads(text) if fmt == "json" else load_yaml(text))
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise PoseFileError(f"{path}: malformed {fmt.upper()} ({err})") from None


def _write_data(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    text = json.dumps(data) + "\n" if _format_of(path) == "json" else dump_yaml(data)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_pose(path: str | os.PathLike) -> Pose:
    path, data = _read_data(path)
    try:
        return pose_from_data(data, where=str(path))
    except PoseError as err:
        raise PoseFileError(str(err)) from None


def write_pose(path: str | os.PathLike, pose: Pose) -> None:
    _write_data(path, pose_to_data(pose))


def read_pose_sequence(path: str | os.PathLike) -> PoseSequence:
    path, data = _read_data(path)
    try:
        return sequence_from_data(data, where=str(path))
    except PoseError as err:
        raise PoseFileError(str(err)) from None


def write_pose_sequence(path: str | os.PathLike, sequence: PoseSequence) -> None:
    _write_data(path, sequence_to_data(sequence))
