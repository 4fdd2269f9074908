"""Pose formats, DWPose-style drawing and the geometric transforms of the robustness study."""

from poseguard_lib.pose.skeleton import (
    FACE_68,
    HAND_21,
    OPENPOSE_BODY_18,
    SCORE_THRESHOLD,
    Keypoints,
    Pose,
    PoseError,
    PoseSequence,
    Skeleton,
)
