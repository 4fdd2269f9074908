"""Does reading the reference at the finest level keep more of a new person? (small profile)

The profile's UNets attend only at their two coarser levels (16×16 and 8×8 tokens of a 64×64 frame;
``model.block_has_attention: [false, true, true]``), and reference attention lives in those attention
layers. So what the denoiser takes from the reference passes through a 16×16 grid at best, while the
tops' patterns, most of the top's share of the appearance gap, are drawn a few pixels wide. Width
(``generator_width.py``), guidance (``guidance_scale.py``), the person's weight in the loss, training
length and the number of people all left the gap near 0.03 of its 0.17 ceiling. This base has attention
in every block, the 32×32 level included (10.4M parameters against 10.2M); every other setting is the
profile's. A stage-1 step costs 1.6 to 1.9 times the profile's (0.84 s against 0.52 s on a 2-core Intel Xeon;
1.62 s against 0.86 s timed together on a 2-core AMD EPYC): about 75 minutes of training on the Xeon,
resuming from its checkpoints if stopped, then 50 minutes of sampling for both bases.

Measured as ``generator_width.py`` measures: stage 1's loss on the person by group of people
(``reference_attention_levels_loss.csv``), then notebook 02's held-out frames, two videos of each
held-out person and three training videos (``reference_attention_levels.csv``).

    .venv/bin/python explorations/reference_attention_levels.py
"""

from pathlib import Path

from poseguard_lib.study import compare_bases_script

TABLES = Path("results/small/base_model")
compare_bases_script(__doc__.splitlines()[0], TABLES / "reference_attention_levels.csv", every_person=True,
                     loss_table=TABLES / "reference_attention_levels_loss.csv",
                     augmented=[5000], unaugmented=[], attention_at_every_level=True)
