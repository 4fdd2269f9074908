"""Test-session settings: the tests use toy networks, which run fastest on one CPU thread."""

import torch

torch.set_num_threads(1)
