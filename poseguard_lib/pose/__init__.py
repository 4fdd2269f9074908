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
from poseguard_lib.pose.draw import condition_image, draw  # `draw` deliberately shadows its module
from poseguard_lib.pose.io import PoseFileError, read_pose, read_pose_sequence, write_pose, write_pose_sequence
from poseguard_lib.pose.kinematics import BodySpec, HandSpec, LimbSpec, build_pose
from poseguard_lib.pose.transforms import (
    CropBox,
    interpolate,
    interpolate_sequence,
    perturb_limb,
    random_crop,
    random_limb_perturbation,
    rotate,
    scale,
    translate,
)
