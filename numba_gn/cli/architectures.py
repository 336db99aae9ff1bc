"""The small networks GroupNorm is made for, shared by `numba-gn demo` and `numba-gn bench`.

* `resnet`: a residual CNN. A stem (Conv3x3 → norm → SiLU) and `blocks` residual blocks,
  each `h = SiLU(norm(Conv3x3(x)))`, `h = norm(Conv3x3(h))`, `x = SiLU(x + h)`, then global
  average pooling and a Dense classifier (logits).
* `unet`: a UNet with two down and two up levels. Each level is Conv3x3 → norm → SiLU;
  down with 2x2 max pooling, up with nearest 2x upsampling followed by a skip concatenation
  with the encoder level of the same size; a 1x1 convolution maps back to the input channels.

Both are written with the functional API, channels-last, and take `norm="group"` (the
default: `GroupNormalization`) or `norm="batch"` (`BatchNormalization`; `"batch:0.9"`
sets its momentum), so that the two can be compared on the same architecture. `torch_resnet`
and `torch_unet` build the same architectures in PyTorch (channels-first, PyTorch's own
initialisation) for the speed comparisons; PyTorch is imported only when they are called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resnet", "torch_resnet", "torch_unet", "unet"]

#: Keras's and numba_gn's GroupNormalization default; BatchNormalization uses the same.
EPSILON = 1e-3


def _norm(kind: str, groups: int) -> Any:
    """`"group"`: GroupNormalization(groups); `"batch"` or `"batch:<momentum>"`."""
    from numba_gn import layers

    if kind == "group":
        return layers.GroupNormalization(groups, epsilon=EPSILON)
    if kind == "batch" or kind.startswith("batch:"):
        momentum = float(kind[6:]) if kind.startswith("batch:") else 0.99  # Keras's default
        return layers.BatchNormalization(momentum=momentum, epsilon=EPSILON)
    raise ValueError(f"norm must be 'group', 'batch' or 'batch:<momentum>', got {kind!r}.")


def _conv_norm_silu(
    h: Any, filters: int, norm: str, groups: int, seed: int, strides: int = 1
) -> Any:
    from numba_gn import initializers, layers

    h = layers.Conv2D(
        filters, 3, strides=strides, padding="same",
        kernel_initializer=initializers.GlorotUniform(seed),
    )(h)
    return layers.Activation("silu")(_norm(norm, groups)(h))


def resnet(
    input_shape: tuple[int, int, int] = (16, 16, 3),
    classes: int = 10,
    *,
    width: int = 32,
    blocks: int = 3,
    groups: int = 8,
    norm: str = "group",
    stem_strides: int = 1,
    seed: int = 0,
) -> Any:
    """A residual CNN with `blocks` blocks of `width` channels (see the module docstring).

    Args:
        input_shape: `(height, width, channels)` of one image.
        classes: number of output logits.
        width: channels of every convolution.
        blocks: number of residual blocks after the stem.
        groups: groups of every GroupNormalization (ignored for `norm="batch"`).
        norm: `"group"`, `"batch"` (Keras's momentum, 0.99) or `"batch:<momentum>"`.
        stem_strides: strides of the stem's convolution (2 halves the blocks' height and width).
        seed: seeds every kernel initializer, so that a model is reproducible.
    """
    from numba_gn import Input, Model, initializers, layers

    inputs = Input(input_shape)
    x = _conv_norm_silu(inputs, width, norm, groups, seed, stem_strides)
    for b in range(blocks):
        h = _conv_norm_silu(x, width, norm, groups, seed + 2 * b + 1)
        h = layers.Conv2D(
            width, 3, padding="same",
            kernel_initializer=initializers.GlorotUniform(seed + 2 * b + 2),
        )(h)
        h = _norm(norm, groups)(h)
        x = layers.Activation("silu")(layers.Add()([x, h]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(
        classes, kernel_initializer=initializers.GlorotUniform(seed + 2 * blocks + 1)
    )(x)
    return Model(inputs, outputs, name=f"resnet{blocks}_{norm.split(':')[0]}norm")


def unet(
    input_shape: tuple[int, int, int] = (16, 16, 3),
    *,
    base: int = 16,
    groups: int = 8,
    norm: str = "group",
    seed: int = 0,
) -> Any:
    """A UNet with two down and two up levels of `base`, `2*base`, `4*base` channels.

    The output has the input's shape (a denoiser's). Height and width must be divisible by 4.

    Args:
        input_shape: `(height, width, channels)` of one image.
        base: channels of the first level (doubled at each level down).
        groups: groups of every GroupNormalization (ignored for `norm="batch"`).
        norm: `"group"` or `"batch"`.
        seed: seeds every kernel initializer.
    """
    from numba_gn import Input, Model, initializers, layers

    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(f"input_shape's height and width must be divisible by 4, "
                         f"got {input_shape}.")
    inputs = Input(input_shape)
    e1 = _conv_norm_silu(inputs, base, norm, groups, seed)
    e2 = _conv_norm_silu(layers.MaxPooling2D(2)(e1), 2 * base, norm, groups, seed + 1)
    mid = _conv_norm_silu(layers.MaxPooling2D(2)(e2), 4 * base, norm, groups, seed + 2)
    d2 = layers.Concatenate()([layers.UpSampling2D(2)(mid), e2])
    d2 = _conv_norm_silu(d2, 2 * base, norm, groups, seed + 3)
    d1 = layers.Concatenate()([layers.UpSampling2D(2)(d2), e1])
    d1 = _conv_norm_silu(d1, base, norm, groups, seed + 4)
    outputs = layers.Conv2D(
        input_shape[-1], 1, kernel_initializer=initializers.GlorotUniform(seed + 5)
    )(d1)
    return Model(inputs, outputs, name=f"unet_{norm}norm")


# -- the same architectures in PyTorch (channels-first), for the speed comparisons --------------


def torch_resnet(
    in_channels: int = 3, classes: int = 10, *, width: int = 32, blocks: int = 3, groups: int = 8
) -> Any:
    """`resnet`'s architecture as a `torch.nn.Module` (GroupNorm, PyTorch's init)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(width, width, 3, padding=1)
            self.norm1 = nn.GroupNorm(groups, width, eps=EPSILON)
            self.conv2 = nn.Conv2d(width, width, 3, padding=1)
            self.norm2 = nn.GroupNorm(groups, width, eps=EPSILON)
            self.act = nn.SiLU()

        def forward(self, x: Any) -> Any:
            h = self.act(self.norm1(self.conv1(x)))
            return self.act(x + self.norm2(self.conv2(h)))

    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(groups, width, eps=EPSILON),
        nn.SiLU(), *(Block() for _ in range(blocks)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes),
    )


def torch_unet(in_channels: int = 3, *, base: int = 16, groups: int = 8) -> Any:
    """`unet`'s architecture as a `torch.nn.Module` (GroupNorm, PyTorch's init)."""
    import torch
    from torch import nn

    def cns(cin: int, cout: int) -> Any:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout, eps=EPSILON), nn.SiLU()
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e1 = cns(in_channels, base)
            self.e2 = cns(base, 2 * base)
            self.mid = cns(2 * base, 4 * base)
            self.d2 = cns(6 * base, 2 * base)
            self.d1 = cns(3 * base, base)
            self.out = nn.Conv2d(base, in_channels, 1)
            self.pool = nn.MaxPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x: Any) -> Any:
            e1 = self.e1(x)
            e2 = self.e2(self.pool(e1))
            mid = self.mid(self.pool(e2))
            d2 = self.d2(torch.cat([self.up(mid), e2], 1))
            d1 = self.d1(torch.cat([self.up(d2), e1], 1))
            return self.out(d1)

    return UNet()
