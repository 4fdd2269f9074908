"""Render a :class:`Pose` as the condition image Moore-AnimateAnyone is trained on.

Bodies, hands and faces follow the DWPose drawing that Moore-AnimateAnyone feeds its pose
guider (see ``shared/notes/pose_format.md``), pixel for pixel: limbs are filled ellipse
polygons dimmed to 60 % by ``uint8 * 0.6`` truncation, joints are circles, hand edges are
thin HSV-coloured lines. Pixel positions are truncated towards zero (Python ``int``) as
the published drawing does, so a pose drawn here matches a pose drawn there. Any other
skeleton (style ``"graph"``) is drawn as coloured edges and points.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from poseguard_lib.pose.skeleton import Keypoints, Pose, PoseError

STICK_WIDTH = 4  # half-width of a body limb ellipse, pixels
LIMB_BRIGHTNESS = 0.6  # the canvas is multiplied by this after the limbs are drawn
BODY_POINT_RADIUS = 4
HAND_LINE_THICKNESS = 2
HAND_POINT_RADIUS = 4
FACE_POINT_RADIUS = 3
GRAPH_LINE_THICKNESS = 2
GRAPH_POINT_RADIUS = 3
# Hand and face pixels with x or y at or below this are treated as undetected (DWPose's eps).
EDGE_EPS = 0.01


def draw(pose: Pose, height: int, width: int) -> np.ndarray:
    """Draw ``pose`` on a black ``height`` x ``width`` canvas; returns RGB uint8 (H, W, 3)."""
    if height <= 0 or width <= 0:
        raise PoseError(f"canvas size must be positive, got height={height}, width={width}")
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for part in pose.parts:  # body first: its dimming must not touch hands or face
        canvas = _DRAWERS[part.skeleton.style](canvas, part)
    return canvas


def condition_image(pose: Pose, height: int, width: int, detect_resolution: int | None = None) -> np.ndarray:
    """The pose image the generator is conditioned on, drawn as Moore-AnimateAnyone does.

    Moore draws the DWPose skeleton at a detection size (short side 512) and resizes it to
    the frame, so line widths scale with the frame. ``detect_resolution`` is that short side
    (``None`` draws at the frame size). Every caller that makes a condition image (training
    data, unsafe pairs, attacks) goes through here so that they all see the same strokes.
    """
    if detect_resolution is None or detect_resolution == min(height, width):
        return draw(pose, height, width)
    if detect_resolution <= 0:
        raise PoseError(f"detect_resolution must be positive, got {detect_resolution}")
    factor = detect_resolution / min(height, width)
    canvas = draw(pose, round(height * factor), round(width * factor))
    interpolation = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
    return cv2.resize(canvas, (width, height), interpolation=interpolation)


def changed_pixels(a: Pose, b: Pose, height: int, width: int, detect_resolution: int | None = None,
                   visible: float = 0.1) -> int:
    """Pixels whose largest channel differs by more than ``visible`` (in [0, 1]) between the condition
    images of ``a`` and ``b``: how much of what the generator sees a change of pose decides."""
    image_a, image_b = (condition_image(pose, height, width, detect_resolution).astype(np.int16) for pose in (a, b))
    return int((np.abs(image_a - image_b).max(-1) > visible * 255).sum())


def _draw_body(canvas: np.ndarray, part: Keypoints) -> np.ndarray:
    height, width = canvas.shape[:2]
    xs = part.xy[:, 0] * float(width)
    ys = part.xy[:, 1] * float(height)
    visible = part.visible
    for (a, b), color in zip(part.skeleton.edges, part.skeleton.edge_colors):
        if not (visible[a] and visible[b]):
            continue
        dx, dy = xs[a] - xs[b], ys[a] - ys[b]
        length = (dx**2 + dy**2) ** 0.5
        polygon = cv2.ellipse2Poly(
            (int((xs[a] + xs[b]) / 2), int((ys[a] + ys[b]) / 2)),
            (int(length / 2), STICK_WIDTH),
            int(math.degrees(math.atan2(dy, dx))),
            0,
            360,
            1,
        )
        cv2.fillConvexPoly(canvas, polygon, color)
    canvas = (canvas * LIMB_BRIGHTNESS).astype(np.uint8)
    return _draw_lines_and_points(canvas, part, _pixels(canvas, part), visible, BODY_POINT_RADIUS)


def _pixels(canvas: np.ndarray, part: Keypoints) -> list[tuple[int, int]]:
    """The keypoints' pixel positions, truncated towards zero as DWPose's drawing does."""
    height, width = canvas.shape[:2]
    return [(int(x * width), int(y * height)) for x, y in part.xy]


def _draw_lines_and_points(canvas: np.ndarray, part: Keypoints, pixels: list[tuple[int, int]], drawn: np.ndarray,
                           point_radius: int, line_thickness: int | None = None) -> np.ndarray:
    """Each skeleton edge between two drawn points as a line (none when ``line_thickness`` is None), then
    the drawn points as filled circles, in the skeleton's colours."""
    if line_thickness is not None:
        for (a, b), color in zip(part.skeleton.edges, part.skeleton.edge_colors):
            if drawn[a] and drawn[b]:
                cv2.line(canvas, pixels[a], pixels[b], color, thickness=line_thickness)
    for pixel, ok, color in zip(pixels, drawn, part.skeleton.keypoint_colors):
        if ok:
            cv2.circle(canvas, pixel, point_radius, color, thickness=-1)
    return canvas


def _detected_pixels(canvas: np.ndarray, part: Keypoints) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Pixel positions and which of them DWPose would draw (scored and inside the eps margin)."""
    pixels = _pixels(canvas, part)
    drawn = np.array([v and x > EDGE_EPS and y > EDGE_EPS for (x, y), v in zip(pixels, part.visible)], dtype=bool)
    return pixels, drawn


def _draw_hand(canvas: np.ndarray, part: Keypoints) -> np.ndarray:
    return _draw_lines_and_points(canvas, part, *_detected_pixels(canvas, part), HAND_POINT_RADIUS, HAND_LINE_THICKNESS)


def _draw_face(canvas: np.ndarray, part: Keypoints) -> np.ndarray:
    """Points only, as DWPose draws faces."""
    return _draw_lines_and_points(canvas, part, *_detected_pixels(canvas, part), FACE_POINT_RADIUS)


def _draw_graph(canvas: np.ndarray, part: Keypoints) -> np.ndarray:
    """Generic skeleton: every edge between two scored points, then the points."""
    return _draw_lines_and_points(canvas, part, _pixels(canvas, part), part.visible, GRAPH_POINT_RADIUS,
                                  GRAPH_LINE_THICKNESS)


_DRAWERS = {"body": _draw_body, "hand": _draw_hand, "face": _draw_face, "graph": _draw_graph}
