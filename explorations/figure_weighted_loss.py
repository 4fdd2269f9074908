"""Does counting the person more in the training loss make the generator keep more of the appearance? (small profile)

The studio wall is about nine tenths of every frame, while the appearance gap lies in the person: the top's
fine patterns and the trousers' colour (``appearance_gap_parts.py``). If the wall made most of stage 1's
denoising loss, the generator would have little reason to learn the clothes. A base trained with
``train.figure_loss_boost`` B counts each diffusion-space position that touches the person (or its shadow)
1 + B times in stage 1's loss, everything else as the profile trains. This measures each base as notebook 02
does (SSIM, PSNR, pose gap, appearance gap, SSIM split between the flat wall and the textured figure) with
the appearance gap split by part of the person, on notebook 02's held-out frames and on three training
videos (people the generator has seen), beside copying the reference and the ground truth. For each base it
also measures stage 1's loss, the plain mean, on the person's positions and on the rest apart
(``loss_figure``, ``loss_wall``: 128 pairs of the frame set's people, conditions kept, noise and timesteps
drawn alike for every base). Bases that are not cached are trained first (about 75 minutes each on 2 cores);
sampling a base takes about 18 minutes for both frame sets. Each model's rows replace its earlier rows.

    .venv/bin/python explorations/figure_weighted_loss.py
    # the committed table also measures the 8,000-step base and the base without hue augmentation:
    .venv/bin/python explorations/figure_weighted_loss.py --stage1-steps 5000 8000 --without-hue-augment 5000
"""

from pathlib import Path

from poseguard_lib.study import compare_bases_script

compare_bases_script(__doc__.splitlines()[0], Path("results/small/base_model/figure_weighted_loss.csv"),
                     augmented=[5000], unaugmented=[], figure_boosts=[9.0])
