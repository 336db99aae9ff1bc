"""Training small models: losses, optimizers, metrics, the fit loop and weight files.

* `losses` — MeanSquaredError, BinaryCrossentropy,
  CategoricalCrossentropy, SparseCategoricalCrossentropy (Keras names, `from_logits`);
* `optimizers` — SGD, Adam, AdamW with Keras's update formulas;
* `metrics` — accuracy;
* `Trainer` — `compile`/`fit`/`evaluate`/`predict`
  (mixed into every model of `numba_gn.models`: `Model`, `Sequential`; models sit above
  this package, which imports neither them nor the layers);
* `numba_gn.training.callbacks` — Keras 3's callbacks (`numba_gn.callbacks`): `History`,
  `ProgbarLogger`, `EarlyStopping`, `ModelCheckpoint`, `BackupAndRestore`, ...;
* `numba_gn.training.progbar` — the progress bar (`Progbar`) that `ProgbarLogger` draws;
* `saving` — `.npz` weight files, read without pickle.
"""

from numba_gn.training import callbacks, losses, metrics, optimizers, saving
from numba_gn.training.model import Trainer
from numba_gn.training.progbar import Progbar

__all__ = ["Progbar", "Trainer", "callbacks", "losses", "metrics", "optimizers", "saving"]
