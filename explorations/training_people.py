"""Does training on more people make the generator keep more of a new person's appearance? (small profile)

The profile's base keeps 0.033 of a 0.173 appearance-gap ceiling on held-out people. Its loss on the person
falls with longer training on training pairs (0.110 after 5,000 steps, 0.089 to 0.098 for the other bases)
but stays near 0.14 on held-out people (``figure_weighted_loss.py``): what it learns of the clothes does not
carry over to people it has not seen. Moving from 48 to 96 training people stopped it painting held-out
people in training people's colours (configs/small.yaml). If the number of people still limits it, a base
trained on more of them should keep more of a new person. A base with ``data.extra_train_appearances``
trains on the profile's 96 people and that many more, drawn after the held-out ones, so the held-out
people, their videos and their placements stay those of notebook 02. Every other setting (5,000 stage-1
steps, hue augmentation) is the profile's, so each person is seen fewer times.

Each base is measured as ``figure_weighted_loss.py`` measures it, on notebook 02's held-out frames, on two
videos of each of the eight held-out people and on three videos of the profile's training people (whom every
base has seen). A base that is not cached is trained first (about 75 minutes on 2 cores, plus about 3
minutes to render 288 more people); sampling it takes about 35 minutes for the three frame sets. Before
sampling, it measures stage 1's loss on the person (as ``figure_weighted_loss.py`` does: 128 pairs) over all
videos of three groups of people: the profile's training people, whom every base has seen; the extra people,
whom only the bases trained on them have seen; and the held-out people, whom no base has seen
(``training_people_loss.csv``). Each model's rows replace its earlier rows.

    .venv/bin/python explorations/training_people.py
"""

from pathlib import Path

from poseguard_lib.study import compare_bases_script

compare_bases_script(__doc__.splitlines()[0], Path("results/small/base_model/training_people.csv"), every_person=True,
                     loss_table=Path("results/small/base_model/training_people_loss.csv"),
                     augmented=[5000], unaugmented=[], extra_people=[288])
