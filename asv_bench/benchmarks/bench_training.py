"""Training: one step of the demo CNN (numba_gn vs PyTorch), and GroupNormalization on a tape.

* ``TrainingStep.time_step``: one numba_gn training step (forward, loss, tape gradient, Adam)
  of the ``numba-gn demo`` model on a fixed batch of 64, BLAS on one thread as ``fit`` runs it;
* ``TrainingStep.timeraw_steps_x100`` / ``TorchTrainingStep.timeraw_steps_x100``: 100 steps of
  the same model in a fresh interpreter, numba_gn and PyTorch (2 threads) — compare these two
  (divide by 100 for one step). PyTorch runs out of process so its OpenMP runtime never
  loads into the process that runs numba_gn's kernels; skipped when torch is not installed;
* ``GroupNormalizationTape.time_forward_gradient``: ``GroupNormalization`` called under a
  ``GradientTape`` and ``tape.gradient`` for the input, gamma and beta (the layer's whole
  training cost, Python overhead included).

``tools/bench_training_step.py`` prints the first comparison directly (interleaved medians).
"""

import importlib.util

from . import common
from .common import Benchmark

try:
    from numba_gn.autograd import GradientTape, Tensor
    from numba_gn.cli.demo import build_demo_model, compile_demo_model
    from numba_gn.layers import GroupNormalization
    from numba_gn.training.blas import blas_threads
except ImportError:  # a commit older than the training code: asv reports these as skipped
    build_demo_model = None

BATCH = 64
STEPS = 100

# The batch, built the same way in this process and in the fresh ones below.
_BATCH_CODE = """
import numpy as np
_rng = np.random.default_rng(0)
x = _rng.random((64, 8, 8, 1), dtype=np.float32)
y = _rng.integers(0, 10, 64)
"""

_NUMBA_GN_SETUP = _BATCH_CODE + """
from numba_gn.cli.demo import build_demo_model, compile_demo_model
from numba_gn.training.blas import blas_threads
model = build_demo_model(0)
compile_demo_model(model)
for _ in range(20):
    model.train_step(x, y)
"""

_NUMBA_GN_CODE = f"""
with blas_threads(1):
    for _ in range({STEPS}):
        model.train_step(x, y)
"""

_TORCH_SETUP = _BATCH_CODE + """
import torch
from torch import nn
torch.set_num_threads(2)
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16, eps=1e-3), nn.SiLU(),
    nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GroupNorm(8, 32, eps=1e-3), nn.SiLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=3e-3, eps=1e-7)
loss_fn = nn.CrossEntropyLoss()
xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
yt = torch.from_numpy(y)
def step():
    opt.zero_grad()
    loss_fn(model(xt), yt).backward()
    opt.step()
for _ in range(20):
    step()
"""

_TORCH_CODE = f"""
for _ in range({STEPS}):
    step()
"""


def _require_training() -> None:
    if build_demo_model is None:
        raise NotImplementedError("numba_gn.training is not in this commit")


class TrainingStep(Benchmark):
    """One training step of the demo CNN at batch 64 (numba_gn)."""

    timeout = 120

    def setup(self):
        _require_training()
        ns = {}
        exec(_BATCH_CODE, ns)  # the very code the fresh interpreters run: the same batch
        self.x, self.y = ns["x"], ns["y"]
        self.model = build_demo_model(0)
        compile_demo_model(self.model)
        for _ in range(20):  # compile/load the kernels, allocate the optimizer state
            self.model.train_step(self.x, self.y)
        self._blas = blas_threads(1)
        self._blas.__enter__()

    def teardown(self):
        self._blas.__exit__(None, None, None)

    def time_step(self):
        self.model.train_step(self.x, self.y)

    def timeraw_steps_x100(self):
        return _NUMBA_GN_CODE, _NUMBA_GN_SETUP


class TorchTrainingStep(Benchmark):
    """The same model and step in PyTorch (CPU, 2 threads), in a fresh interpreter."""

    timeout = 180

    def setup(self):
        if importlib.util.find_spec("torch") is None:
            raise NotImplementedError("PyTorch not installed: pip install torch to compare")

    def timeraw_steps_x100(self):
        return _TORCH_CODE, _TORCH_SETUP


class GroupNormalizationTape(Benchmark):
    """``GroupNormalization(32)`` forward under a GradientTape, then dx, dgamma, dbeta."""

    params = [["tiny", "small", "medium"]]
    param_names = ["size"]
    timeout = 300

    def setup(self, size):
        _require_training()
        x = common.get_x("channels-last", size, "float32")
        self.x = Tensor(x)
        self.dy = common.get_dy("channels-last", size, "float32")
        self.layer = GroupNormalization(common.GROUPS, epsilon=common.EPSILON)
        self.layer(self.x)  # build, and compile/load the kernels
        self.time_forward_gradient(size)

    def time_forward_gradient(self, size):
        layer = self.layer
        with GradientTape() as tape:
            tape.watch(self.x)
            y = layer(self.x)
        tape.gradient(y, [self.x, layer.gamma, layer.beta], output_gradients=self.dy)

