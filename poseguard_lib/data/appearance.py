"""What a synthetic fashion model looks like: skin, hair, clothes and the studio behind.

The synthetic stand-in for UBC-Fashion needs many visibly different people whose
identity a generator can learn to copy from a reference frame. An :class:`Appearance`
fixes every colour and garment choice; :func:`sample_appearances` draws them from a seed
so that train and test people are reproducible.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

import numpy as np

from poseguard_lib.config import DEFAULT_WALL_SATURATION

RGB = tuple[int, int, int]

HairStyle = Literal["short", "bob", "long", "bun"]
TopPattern = Literal["plain", "stripes", "checks", "dots"]
Sleeves = Literal["sleeveless", "short", "long"]
BottomType = Literal["trousers", "skirt", "shorts"]

# Skin tones from light to deep (RGB), jittered per person.
_SKIN_TONES: tuple[RGB, ...] = (
    (250, 222, 200), (241, 194, 167), (230, 180, 140), (214, 160, 115),
    (190, 132, 90), (160, 104, 68), (128, 80, 52), (96, 60, 40),
)
_HAIR_COLOURS: tuple[RGB, ...] = (
    (28, 24, 24), (55, 38, 30), (95, 62, 40), (130, 70, 35),
    (200, 165, 105), (225, 200, 145), (150, 150, 150), (160, 60, 35),
)


class AppearanceError(ValueError):
    """An appearance field that the renderer cannot draw; the message names the field."""


@dataclass(frozen=True)
class Appearance:
    """Every choice that makes one synthetic person look like themselves."""

    skin: RGB
    hair: RGB
    hair_style: HairStyle
    top: RGB
    top_accent: RGB  # second colour of the pattern (unused when plain)
    top_pattern: TopPattern
    pattern_scale: float  # pattern period relative to the image height (1 = default)
    sleeves: Sleeves
    bottom: RGB
    bottom_type: BottomType
    shoes: RGB
    background: RGB
    floor_shade: float  # floor brightness relative to the wall; 1 = no visible floor
    build: float  # limb and torso thickness factor (1 = average)

    def __post_init__(self) -> None:
        choices = {"hair_style": HairStyle, "top_pattern": TopPattern, "sleeves": Sleeves, "bottom_type": BottomType}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in choices:
                allowed = get_args(choices[item.name])
                if value not in allowed:
                    raise AppearanceError(f"appearance.{item.name} must be one of {allowed}, got {value!r}")
            elif item.type == "RGB":
                if (
                    not isinstance(value, tuple)
                    or len(value) != 3
                    or not all(isinstance(c, int) and 0 <= c <= 255 for c in value)
                ):
                    raise AppearanceError(
                        f"appearance.{item.name} must be an (r, g, b) tuple of ints in 0..255, got {value!r}"
                    )
        if not 0.5 <= self.pattern_scale <= 2.0:
            raise AppearanceError(f"appearance.pattern_scale must be within [0.5, 2], got {self.pattern_scale}")
        if not 0.5 <= self.floor_shade <= 1.0:
            raise AppearanceError(f"appearance.floor_shade must be within [0.5, 1], got {self.floor_shade}")
        if not 0.7 <= self.build <= 1.3:
            raise AppearanceError(f"appearance.build must be within [0.7, 1.3], got {self.build}")


# The appearance's fields by what they dress: each field in exactly one group (a test checks), so that
# swapping groups one at a time between two people splits their difference into parts.
APPEARANCE_PARTS: dict[str, tuple[str, ...]] = {
    "studio": ("background", "floor_shade"),
    "skin": ("skin",),
    "hair": ("hair", "hair_style"),
    "top": ("top", "top_accent", "top_pattern", "pattern_scale", "sleeves"),
    "bottom": ("bottom", "bottom_type"),
    "shoes": ("shoes",),
    "build": ("build",),
}


def with_fields_of(person: Appearance, other: Appearance, names: tuple[str, ...]) -> Appearance:
    """``person`` with ``other``'s values of the fields ``names`` (say, a part of :data:`APPEARANCE_PARTS`)."""
    unknown = sorted(set(names) - {item.name for item in fields(Appearance)})
    if unknown:
        raise KeyError(f"unknown appearance fields {unknown}")
    return replace(person, **{name: getattr(other, name) for name in names})


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _jitter(colour: RGB, rng: np.random.Generator, amount: int) -> RGB:
    shifted = (int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)
    return tuple(shifted)  # type: ignore[return-value]


def _garment_colour(rng: np.random.Generator) -> RGB:
    """Fashion colours: a third neutrals (black, white, grey, beige), the rest saturated hues."""
    if rng.random() < 0.33:
        neutrals: tuple[RGB, ...] = ((25, 25, 28), (240, 240, 236), (128, 128, 130), (205, 190, 160), (60, 60, 75))
        return _jitter(neutrals[rng.integers(len(neutrals))], rng, 8)
    return _hsv(rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.92))


def _contrasting(colour: RGB, rng: np.random.Generator) -> RGB:
    """An accent far enough from ``colour`` that the pattern is visible."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    if rng.random() < 0.5:
        return _hsv(h, s * 0.3, 0.95) if v < 0.55 else _hsv(h, min(1.0, s + 0.2), 0.15)
    return _hsv(h + rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.9), 0.35 if v > 0.6 else 0.9)


def _sample_one(rng: np.random.Generator, wall_saturation: tuple[float, float]) -> Appearance:
    top = _garment_colour(rng)
    return Appearance(
        skin=_jitter(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], rng, 10),
        hair=_jitter(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], rng, 10),
        hair_style=get_args(HairStyle)[rng.integers(4)],
        top=top,
        top_accent=_contrasting(top, rng),
        top_pattern=get_args(TopPattern)[rng.choice(4, p=[0.4, 0.2, 0.2, 0.2])],
        pattern_scale=float(rng.uniform(0.8, 1.3)),
        sleeves=get_args(Sleeves)[rng.integers(3)],
        bottom=_garment_colour(rng),
        bottom_type=get_args(BottomType)[rng.choice(3, p=[0.45, 0.35, 0.2])],
        shoes=_garment_colour(rng) if rng.random() < 0.4 else _jitter((30, 28, 28), rng, 12),
        # Studio walls: light; by default barely saturated, like UBC-Fashion's white sets.
        background=_hsv(rng.random(), rng.uniform(*wall_saturation), rng.uniform(0.78, 0.97)),
        floor_shade=float(rng.uniform(0.84, 0.95)) if rng.random() < 0.75 else 1.0,
        build=float(rng.uniform(0.88, 1.12)),
    )


def sample_appearances(n: int, seed: int, wall_saturation: tuple[float, float] = DEFAULT_WALL_SATURATION) -> list[Appearance]:
    """``n`` people drawn from ``seed``; the first ``k`` are the same for any ``n >= k``.

    ``wall_saturation`` is the HSV saturation range of the studio walls (see ``DataSettings``).
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of appearances must be a non-negative integer, got {n!r}")
    root = np.random.SeedSequence(seed)
    return [_sample_one(np.random.default_rng(child), wall_saturation) for child in root.spawn(n)]
