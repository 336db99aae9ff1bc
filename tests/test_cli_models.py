"""The ResNet/UNet of the demos and of ``numba-gn bench --models``: shapes, PyTorch twins, runs.

The demos run here on a small slice of the digits (seconds, not minutes); what they print is
checked for its structure, and the accuracy a full run reaches is the README's claim, measured
there.
"""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest

from numba_gn.cli import architectures, bench_models, demo_models


def test_resnet_shapes_and_parameters():
    model = architectures.resnet((16, 16, 3), 10, width=32, blocks=3)
    assert model.output_shape == (None, 10)
    # stem conv 3*3*3*32+32, 6 block convs 3*3*32*32+32, 7 GN (gamma+beta), dense 32*10+10
    expected = (27 * 32 + 32) + 6 * (9 * 32 * 32 + 32) + 7 * 64 + (32 * 10 + 10)
    assert model.count_params() == expected
    y = model.predict(np.zeros((2, 16, 16, 3), np.float32), verbose=0)
    assert y.shape == (2, 10)


def test_unet_keeps_the_input_shape_and_rejects_odd_sizes():
    model = architectures.unet((8, 8, 3), base=8, groups=4)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match="divisible by 4"):
        architectures.unet((10, 8, 3))


def test_batch_norm_variants_and_bad_norm():
    model = architectures.resnet((8, 8, 1), 10, width=8, blocks=1, groups=2, norm="batch:0.9")
    bns = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 3 and all(bn.momentum == 0.9 for bn in bns)
    with pytest.raises(ValueError, match="norm must be"):
        architectures.resnet(norm="layer")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_torch_twins_have_the_same_parameter_counts():
    ours = architectures.resnet((16, 16, 3)).count_params()
    theirs = sum(p.numel() for p in architectures.torch_resnet().parameters())
    assert ours == theirs
    ours = architectures.unet((16, 16, 3)).count_params()
    theirs = sum(p.numel() for p in architectures.torch_unet().parameters())
    assert ours == theirs


def _small_digits():
    rng = np.random.default_rng(0)
    x = rng.random((48, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 48)
    return x[:32], y[:32], x[32:], y[32:]


def test_resnet_demo_trains_and_reports(capsys):
    result = demo_models.run_resnet(1, 16, 0, True, _small_digits())
    out = capsys.readouterr().out
    assert "Test accuracy" in out and 0.0 <= result["accuracy"] <= 1.0


def test_compare_bn_prints_one_row_per_batch_size(capsys, tmp_path):
    plot = tmp_path / "bn.png"
    results = demo_models.run_compare_bn(1, 0, _small_digits(), str(plot), batch_sizes=(8, 16))
    assert plot.stat().st_size > 1000
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["batch", "size"]
    assert [line.split()[0] for line in lines[2:4]] == ["8", "16"]
    assert set(results) == set(demo_models.COMPARE_NORMS)
    assert all(set(r) == {8, 16} for r in results.values())


def test_bench_models_rows_without_torch():
    rows = bench_models.measure(("resnet",), batch=2, size=8, steps=1, repeat=1,
                                with_torch=False)
    (row,) = rows
    ours = row["numba_gn"]
    assert ours["train_step_s"] > 0 and ours["predict_s"] > 0
    assert set(ours["breakdown"]) == {"convolution", "group_norm", "other"}
    assert ours["breakdown"]["convolution"] > 0 and ours["breakdown"]["group_norm"] > 0
    threadpoolctl = pytest.importorskip("threadpoolctl")
    numpy_blas = [lib for lib in threadpoolctl.threadpool_info()
                  if lib["user_api"] == "blas" and "numpy" in lib["filepath"]]
    if not numpy_blas:  # a BLAS outside NumPy's wheel (conda's MKL, a system library)
        assert ours["blas"] is None
        return
    lib = numpy_blas[0]
    assert ours["blas"].startswith(f"{lib['internal_api']} {lib['version']}")
    out = io.StringIO()
    bench_models.print_table(rows, file=out)
    assert out.getvalue().splitlines()[-1] == f"numba_gn's matrix products: {ours['blas']}"
