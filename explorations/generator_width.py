"""Does a wider generator keep more of a new person's appearance? (small profile)

The profile's base keeps 0.033 of a 0.173 appearance-gap ceiling on held-out people, and its loss on the
person stays near 0.133 on people it has not seen however it is trained: longer (8,000 steps), without hue
augmentation, with the person counting more in the loss, or on four times as many people
(``figure_weighted_loss.py``, ``training_people.py``). What is left is the model's capacity. A base with
``--width-scale`` 1.5 has every UNet block (denoiser and ReferenceNet) half as wide again as the profile's
(48-96-192 channels against 32-64-128; 22.6M parameters in all against 10.2M); every other setting
(5,000 + 300 steps, batch 8, hue augmentation, seed 0) is the profile's. A step costs about twice as much
(1.44 s against 0.76 s on two cores), so it trains in about two hours here.

It first measures stage 1's loss on the person over all videos of the profile's training people and of
the held-out people (``generator_width_loss.csv``; the same groups and draws as ``training_people_loss.csv``),
then compares the bases as ``figure_weighted_loss.py`` does, on notebook 02's held-out frames, on two
videos of each held-out person and on three training videos (``generator_width.csv``; sampling the wide
base takes about an hour). Each model's rows replace its earlier rows.

    .venv/bin/python explorations/generator_width.py
"""

from pathlib import Path

from poseguard_lib.study import compare_bases_script

compare_bases_script(__doc__.splitlines()[0], Path("results/small/base_model/generator_width.csv"), every_person=True,
                     loss_table=Path("results/small/base_model/generator_width_loss.csv"),
                     augmented=[5000], unaugmented=[], width_scales=[1.5])
