"""Does stronger guidance carry more of the reference's appearance? (small profile)

Classifier-free guidance here drops only the reference: the unconditional rows have no ReferenceNet
features and a zero image embedding, and keep the pose. So the guidance scale multiplies exactly the
reference's pull on the output, and the appearance gap (0.033 at the profile's scale of 1.5, ceiling
0.173) is what it should move if anything does. Moore-AnimateAnyone samples at 3.5. The base is the
profile's (no training); each scale samples notebook 02's 256 held-out frames (about 8 minutes at 1.0,
16 above it on two cores; 1.5 comes from the cache) and is measured as ``generator_width.py`` measures
bases: SSIM, the pose and appearance gaps, SSIM on the wall and on the figure, the gap by part of the
person, beside copying the reference. Sampled outputs are cached, so an interrupted run resumes with
the scales it had not sampled.

    .venv/bin/python explorations/guidance_scale.py [--guidance-scales 1.0 1.5 2.5 3.5]
"""

import argparse
from pathlib import Path

from poseguard_lib.config import configure_torch, load_profile
from poseguard_lib.study import benign_eval_set, compare_bases

TABLE = Path("results/small/base_model/guidance_scale.csv")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 1.5, 2.5, 3.5])
args = parser.parse_args()
cfg = load_profile("small", seed=0)
configure_torch(cfg)
frames_sets = {"notebook 02's held-out frames": benign_eval_set(cfg)}
scales = {f"profile's base, guidance {scale:g}": cfg.with_changes("sampling", guidance_scale=scale)
          for scale in args.guidance_scales}
measured = compare_bases(scales, frames_sets, cfg, TABLE)
print(measured.set_index("model").drop(columns=["frames", "frames_set", "profile"]).round(3).T.to_string())
