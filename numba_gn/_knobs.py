"""Every performance knob of the engine, in one place.

These numbers only choose *which* kernel runs and how work is spread over threads; none of them
changes a result's bits (every path computes the same arithmetic in the same order, see
`numba_gn.kernels`). The constants that do define the arithmetic (piece and lane sizes,
rows per block) live with the kernels. Tests force a path with `numba_gn._engine.forced`
rather than by changing these values.
"""

from __future__ import annotations

import os

#: Inputs smaller than this many elements run serially: a parallel launch costs more than it saves.
PARALLEL_MIN_ELEMENTS = 1 << 15
#: The same limit for group normalization, whose serial kernels are cheaper per element than the
#: convolution and pooling kernels': up to 65,536 elements they beat both parallel strategies
#: (docs/threads.md, "Which kernels run").
GROUP_NORM_PARALLEL_MIN_ELEMENTS = 1 << 17

#: The fused kernels hand their iterations (slabs or samples) to the threads dynamically, in about
#: this many chunks per thread: with a core shared with another process, the thread left on it
#: does fewer chunks instead of half of all the work (docs/threads.md gives the measurements).
#: One iteration per chunk cost about 0.2 us per iteration in Numba's scheduler, a third of a
#: mid-size call; sixteen chunks per thread keep the imbalance under a sixteenth.
PARALLEL_CHUNKS_PER_THREAD = 16

#: Groups whose contiguous run `D*B` is shorter than this use the row kernels when a sample
#: has several rows; longer runs vectorise on their own (slab kernels).
ROW_MAX_RUN = 64

#: Longest row (`C*B` elements) the row kernels take for short channel runs: longer rows leave
#: them too few rows per block, and their per-block float64 partial sums cost more than they
#: save.
ROW_MAX_ELEMENTS = 2048

#: The fused slab kernels (one slab per thread, slab hot in L2) need this many slabs per thread
#: to balance; with fewer slabs the chunked kernels spread pieces of slabs over all threads.
FUSED_MIN_SLABS_PER_THREAD = 4

#: ... and slabs of at least this many elements. Below it a slab's fixed costs (its shift, the
#: total of its lane accumulators, its coefficients) outweigh its work, and the chunked kernels,
#: which sum several short segments per unit, are faster (docs/threads.md, "Which kernels run").
FUSED_MIN_SLAB_ELEMENTS = 256

#: The row kernels' parallel strategies pay from larger inputs than the slab kernels': their
#: per-element work is less, so a parallel launch and the per-thread partial sums weigh more.
#: With many samples (`ROW_SAMPLES_MIN_PER_THREAD`) they run in parallel from this many
#: elements, with fewer from the next: whole samples per thread when the samples divide evenly
#: over the threads, else the chunked row kernels (docs/threads.md, "Which kernels run").
ROW_FUSED_MIN_ELEMENTS = 1 << 16
ROW_FEW_SAMPLES_MIN_ELEMENTS = 1 << 17

#: With this many samples per thread the row kernels give each thread whole samples (no barrier
#: between a sample's passes, and threads drift out of step, mixing reads and writes); with
#: fewer they spread every sample's blocks over all threads, a wave of samples at a time.
ROW_SAMPLES_MIN_PER_THREAD = 4

#: Bytes of input the row kernels process between their statistics and output passes.
WAVE_BYTES = 8 << 20

#: Outputs at least this large are written with streaming (non-temporal) stores: they would not
#: stay in the last-level cache anyway, and skipping the write-allocate read of each cache line
#: saves a third of the output pass's memory traffic. Smaller outputs keep ordinary stores so
#: that whoever reads them next finds them in the cache.
STREAM_MIN_BYTES = 16 << 20

#: The switch for the hand-written LLVM IR of the output loops (streaming stores):
#: `NUMBA_GN_STREAMING_STORES=0` in the environment before import turns it off, and every
#: output loop is then plain Numba code (same bits; large outputs are written without
#: streaming stores). It changes the compiled kernels, so it has its own disk cache folder.
STREAMING_STORES = os.environ.get("NUMBA_GN_STREAMING_STORES", "1").strip() != "0"
