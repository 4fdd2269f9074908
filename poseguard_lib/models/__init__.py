"""The AnimateAnyone-style generator: parts (components), sampling (pipeline), training."""

from poseguard_lib.models.components import AnimateAnyone, ReferenceConditions, build_model, build_scheduler, pose_conditioning
from poseguard_lib.models.motion import PerFrameGroupNorm
from poseguard_lib.models.pipeline import GenerationInputError, generate_images, generate_video
from poseguard_lib.models.reference_attention import ReferenceAttnProcessor, ReferenceBank
from poseguard_lib.models.training import load_or_train_base_model, train_stage
