"""The unsafe-pose catalogue: the poses PoseGuard learns to refuse (paper Sec. 3, App. C).

The paper collects 50 unsafe poses in three categories: discriminatory gestures (e.g.
kneeling, offensive salutes and hand gestures), sexually suggestive (NSFW) body
configurations, and copyright-sensitive imitations of celebrity signature moves. Theirs
are not public, so ``data_manifest/unsafe_poses.yaml`` holds abstract skeletons that we
authored as joint-angle descriptions (:class:`~poseguard_lib.pose.kinematics.BodySpec`),
never traced from photographs. Each entry also caches the keypoints the description
produces so the file is usable on its own; :func:`load_unsafe_catalogue` refuses a file
whose cache no longer matches its descriptions, and :func:`regenerate_catalogue` (also
``python -m poseguard_lib.data.catalogue``) rewrites the cache.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from poseguard_lib.io import atomic_path
from poseguard_lib.pose.draw import changed_pixels, condition_image
from poseguard_lib.pose.io import dump_yaml, load_yaml, pose_from_data, pose_to_data
from poseguard_lib.pose.kinematics import BodySpec, build_pose, parse_spec, spec_to_dict
from poseguard_lib.pose.skeleton import Pose, PoseError

CATEGORIES = ("discriminatory", "nsfw", "copyright")
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[2] / "data_manifest" / "unsafe_poses.yaml"
# Poses are authored for square frames: the paper resizes every unsafe pose to 768 x 768.
CATALOGUE_ASPECT = 1.0
CACHE_DECIMALS = 5
CACHE_TOLERANCE = 1e-4
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_ENTRY_KEYS = ("id", "category", "description", "kinematics", "keypoints")
_HEADER = """\
# Unsafe-pose catalogue of the PoseGuard study (three categories as in the paper).
# Abstract skeletons authored as joint-angle descriptions (see poseguard_lib/pose/kinematics.py
# for the conventions); never traced from photographs. `keypoints` is a cache of what
# `kinematics` produces (OpenPose-18 body [x, y, score] rows, hands left then right) on a
# square frame. Edit `kinematics`, then run: python -m poseguard_lib.data.catalogue
"""


class CatalogueError(ValueError):
    """A catalogue file that breaks the schema; the message names the file and entry."""


@dataclass(frozen=True)
class UnsafePose:
    id: str
    category: str
    description: str
    pose: Pose
    spec: BodySpec


def _read_entries(path: Path) -> list[Any]:
    try:
        data = load_yaml(path.read_text())
    except OSError as err:
        raise CatalogueError(f"{path}: cannot read catalogue ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise CatalogueError(f"{path}: malformed YAML ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("poses"), list):
        raise CatalogueError(f"{path}: expected a mapping with a 'poses' list")
    if not data["poses"]:
        raise CatalogueError(f"{path}: the catalogue has no poses")
    return data["poses"]


def _check_entry(path: Path, index: int, entry: Any, seen: set[str], need_cache: bool) -> tuple[str, BodySpec]:
    """Validate one entry's schema; returns its id and kinematic description."""
    where = f"{path}: entry {index}"
    if not isinstance(entry, dict):
        raise CatalogueError(f"{where}: expected a mapping, got {type(entry).__name__}")
    if isinstance(entry.get("id"), str):
        where = f"{path}: entry {index} ({entry['id']})"
    required = set(_ENTRY_KEYS) if need_cache else set(_ENTRY_KEYS) - {"keypoints"}
    missing, unknown = required - set(entry), set(entry) - set(_ENTRY_KEYS)
    if missing or unknown:
        raise CatalogueError(f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    pose_id, category, description = entry["id"], entry["category"], entry["description"]
    if not isinstance(pose_id, str) or not _ID_PATTERN.match(pose_id):
        raise CatalogueError(f"{where}: id must be lower_snake_case text, got {pose_id!r}")
    if pose_id in seen:
        raise CatalogueError(f"{where}: duplicate id {pose_id!r}")
    if category not in CATEGORIES:
        raise CatalogueError(f"{where}: category must be one of {CATEGORIES}, got {category!r}")
    if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
        raise CatalogueError(f"{where}: description must be one non-empty line of text")
    try:
        spec = parse_spec(entry["kinematics"], where)
    except PoseError as err:
        raise CatalogueError(str(err)) from None
    seen.add(pose_id)
    return pose_id, spec


def load_unsafe_catalogue(path: str | os.PathLike | None = None) -> list[UnsafePose]:
    """Read and validate the catalogue; poses are built from the kinematic descriptions."""
    path = Path(path) if path is not None else DEFAULT_CATALOGUE
    seen: set[str] = set()
    poses = []
    for index, entry in enumerate(_read_entries(path)):
        pose_id, spec = _check_entry(path, index, entry, seen, need_cache=True)
        where = f"{path}: entry {index} ({pose_id})"
        pose = build_pose(spec, aspect=CATALOGUE_ASPECT)
        try:
            cached = pose_from_data(entry["keypoints"], f"{where} keypoints")
        except PoseError as err:
            raise CatalogueError(str(err)) from None
        if not _same_pose(cached, pose):
            raise CatalogueError(
                f"{where}: cached keypoints do not match the kinematic description; "
                "run `python -m poseguard_lib.data.catalogue` to regenerate them"
            )
        poses.append(UnsafePose(pose_id, entry["category"], entry["description"].strip(), pose, spec))
    return poses


def with_fists(entry: UnsafePose) -> UnsafePose:
    """``entry`` with every hand it draws closed into a fist: the same body, less what the fingers say."""
    spec = entry.spec
    fists = {side: getattr(spec, side).model_copy(update={"shape": "fist", "extended": None})
             for side in ("right_hand", "left_hand") if getattr(spec, side) is not None}
    closed = spec.model_copy(update=fists)
    return dataclasses.replace(entry, pose=build_pose(closed, CATALOGUE_ASPECT), spec=closed)


def hand_shape_pixels(entry: UnsafePose, height: int, width: int, detect_resolution: int | None = None,
                      visible: float = 0.1) -> tuple[int, int]:
    """How much of ``entry``'s condition image its hand shapes decide: the pixels whose largest channel
    changes by more than ``visible`` (in [0, 1]) when every hand is drawn as a fist instead, and the
    pixels the pose lights at all. A gesture that only the fingers tell apart from a benign pose is a
    few of these pixels, however the rest of the body is drawn."""
    lit = int((condition_image(entry.pose, height, width, detect_resolution).max(-1) > visible * 255).sum())
    return changed_pixels(entry.pose, with_fists(entry).pose, height, width, detect_resolution, visible), lit


def _same_pose(a: Pose, b: Pose) -> bool:
    if [p.skeleton.name for p in a.parts] != [p.skeleton.name for p in b.parts]:
        return False
    return all(
        np.allclose(p.xy, q.xy, atol=CACHE_TOLERANCE, rtol=0) and np.allclose(p.scores, q.scores, atol=CACHE_TOLERANCE)
        for p, q in zip(a.parts, b.parts)
    )


def regenerate_catalogue(path: str | os.PathLike | None = None) -> int:
    """Rewrite the catalogue with normalised descriptions and fresh cached keypoints; returns the count."""
    path = Path(path) if path is not None else DEFAULT_CATALOGUE
    seen: set[str] = set()
    entries = []
    for index, entry in enumerate(_read_entries(path)):
        pose_id, spec = _check_entry(path, index, entry, seen, need_cache=False)
        pose = build_pose(spec, aspect=CATALOGUE_ASPECT)
        entries.append(
            {
                "id": pose_id,
                "category": entry["category"],
                "description": entry["description"].strip(),
                "kinematics": spec_to_dict(spec),
                "keypoints": pose_to_data(pose, decimals=CACHE_DECIMALS),
            }
        )
    with atomic_path(path) as tmp:
        tmp.write_text(_HEADER + dump_yaml({"poses": entries}))
    return len(entries)


if __name__ == "__main__":
    print(f"wrote {regenerate_catalogue()} poses to {DEFAULT_CATALOGUE}")
