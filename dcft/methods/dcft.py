"""DCFT: deconvolution in subspace (arXiv 2503.01419), as the authors' code computes it.

Per adapted Linear (n_in -> n_out): a (k x H_in), b (H_out x k) and a d x d kernel C, with
H = (n - d) / stride + 1 so that the transposed convolution lands exactly on n. The update is
``Delta^T = conv_transpose2d(a^T b^T, C, stride)`` of shape (n_in x n_out), applied as
``y = base(x) + (alpha / r) * x @ Delta^T``.

Three paths compute the same function (``impl``; ``auto``, the default, is ``structured``):
- ``structured`` (any stride <= kernel): x @ Delta^T from a, b and C by their structure
  (``dcft_ops``): contract x's windows with a, mix with C, spread over b; k * d * (n_in / s + d +
  n_out) multiply-adds per token, fused with the frozen Linear (``FusedDcftLinear``).
- ``fast`` (stride == kernel): Delta^T = kron(a^T b^T, C) = kron(a, I_d)^T @ kron(b^T, C), run as
  LoRA with rank k*d (``FusedLowRankLinear``): the earlier fast path, kept for comparison.
- ``reference``: builds the dense Delta^T with conv_transpose2d every forward, as the authors do
  (Table 5 times this path so that its hours compare with the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .constraints import validate_constraint
from .dcft_ops import FusedDcftLinear
from .layers import LinearAdapter, LowRankLinear
from .registry import LowRankMethod, MatrixOptions, register

INITS = ("authors", "lora")
IMPLS = ("auto", "structured", "fast", "reference")


def input_side(n: int, kernel: int, stride: int) -> int:
    """H such that a transposed convolution (kernel, stride, padding 0) maps H to exactly n."""
    return (n - kernel) // stride + 1


def sides_fit(n: int, kernel: int, stride: int) -> bool:
    return n >= kernel and (n - kernel) % stride == 0


def kron(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """torch.kron for 2-D tensors, also for non-contiguous (e.g. transposed) inputs."""
    (p, q), (r, s) = left.shape, right.shape
    return (left[:, None, :, None] * right[None, :, None, :]).reshape(p * r, q * s)


def kron_factors(
    a: torch.Tensor, b: torch.Tensor, kernel: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """down = kron(a, I_d) (k*d x n_in) and up = scale * kron(b^T, C) (k*d x n_out), with
    down^T @ up = scale * kron(a^T b^T, C) = scale * Delta^T (stride == kernel)."""
    eye = torch.eye(kernel.shape[0], device=a.device, dtype=a.dtype)
    return kron(a, eye), kron(b.T * scale, kernel)


class DcftLinear(LowRankLinear):
    def __init__(
        self,
        base: nn.Linear,
        kernel: int,
        stride: int,
        rank: int = 1,
        scale: float = 2.0,
        init: str = "authors",
        constraint: str = "orth",
        impl: str = "auto",
        name: str = "",
    ) -> None:
        super().__init__(base)
        n_in, n_out = base.in_features, base.out_features
        for side, n in (("in_features", n_in), ("out_features", n_out)):
            if not sides_fit(n, kernel, stride):
                raise ValueError(
                    f"DCFT kernel {kernel} / stride {stride} does not fit {name or 'module'} "
                    f"(Linear {n_in} -> {n_out}): {side}={n} needs (n - kernel) divisible by "
                    "stride and n >= kernel"
                )
        if impl not in IMPLS:
            raise ValueError(f"unknown DCFT impl {impl!r}; valid: {', '.join(IMPLS)}")
        self.path = "structured" if impl == "auto" else impl
        if self.path == "fast" and stride != kernel:
            raise ValueError(f"DCFT impl 'fast' needs stride == kernel, got {stride} != {kernel}")
        if constraint == "mpc_n" and (stride != kernel or self.path == "reference"):
            raise ValueError(
                "DCFT with the mpc_n ReLU needs stride == kernel and impl auto, structured or fast"
            )
        self.kernel_size, self.stride, self.scale, self.constraint = (
            kernel,
            stride,
            scale,
            constraint,
        )
        self.relu = constraint == "mpc_n"
        factory = {"device": base.weight.device, "dtype": torch.float32}
        h_in, h_out = input_side(n_in, kernel, stride), input_side(n_out, kernel, stride)
        self.dcft_a = nn.Parameter(torch.empty(rank, h_in, **factory))
        self.dcft_b = nn.Parameter(torch.empty(h_out, rank, **factory))
        self.dcft_kernel = nn.Parameter(torch.empty(kernel, kernel, **factory))
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        if init == "authors":
            for p in (self.dcft_a, self.dcft_b, self.dcft_kernel):
                nn.init.normal_(p, std=0.02)
        else:
            nn.init.normal_(self.dcft_a, std=self.dcft_a.shape[1] ** -0.5)
            nn.init.normal_(self.dcft_kernel, std=self.kernel_size**-0.5)
            nn.init.zeros_(self.dcft_b)

    def subspace_feature(self) -> torch.Tensor:
        """F = a^T b^T, the (H_in x H_out) input of the transposed convolution."""
        return self.dcft_a.T @ self.dcft_b.T

    def delta_transposed(self) -> torch.Tensor:
        """Delta^T (n_in x n_out) via conv_transpose2d, unscaled: the authors' computation."""
        feature = self.subspace_feature()[None, None]
        return F.conv_transpose2d(feature, self.dcft_kernel[None, None], stride=self.stride)[0, 0]

    def delta_weight(self) -> torch.Tensor:
        if self.constraint == "mpc_n":
            raise ValueError(
                "a DCFT update with the mpc_n ReLU is non-linear: no dense delta_weight"
            )
        return self.delta_transposed().T * self.scale

    def factor_parameters(self) -> tuple[nn.Parameter, ...]:
        return self.dcft_a, self.dcft_b, self.dcft_kernel

    def build_factors(
        self, a: torch.Tensor, b: torch.Tensor, kernel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return kron_factors(a, b, kernel, self.scale)

    def fused(self) -> bool:
        return self.fuse and self.path != "reference"

    def structured(self, x: torch.Tensor, base: nn.Linear | None) -> torch.Tensor:
        """``base(x) + update(x)`` as one op (the update alone without ``base``)."""
        weight, bias = (None, None) if base is None else (base.weight, base.bias)
        a, b, kernel = self.factor_parameters()
        return FusedDcftLinear.apply(
            x, weight, bias, a, b, kernel, self.scale, self.stride, self.relu
        )

    def update(self, x: torch.Tensor) -> torch.Tensor:
        if self.path == "structured":
            return self.structured(x, None)
        if self.path == "fast":
            return super().update(x)
        return (x @ self.delta_transposed()) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.path == "structured" and self.fused() and not self.merged:
            return self.structured(x, self.base)
        return super().forward(x)

    def constrained_factors(self) -> tuple[str, torch.Tensor, torch.Tensor]:
        return self.constraint, self.dcft_a, self.dcft_b


@dataclass
class DcftOptions(MatrixOptions):
    """kernel: d; stride: defaults to the kernel (the paper's setting); rank: k (the authors fix
    k = 1); the update is scaled by alpha / r (authors: alpha 16 or 32, r 8); init: ``authors``
    (a, b, C ~ N(0, 0.02^2)) or ``lora`` (b = 0, a and C ~ N(0, 1/fan_in)); constraint and its
    weight gamma (authors: ``orth``, 0.1); impl: auto (= structured) | structured | fast |
    reference."""

    kernel: int = 8
    stride: int | None = None
    rank: int = 1
    alpha: float = 16.0
    r: int = 8
    init: str = "authors"
    constraint: str = "orth"
    gamma: float = 0.1
    impl: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stride is None:
            self.stride = self.kernel
        if self.kernel < 1 or self.stride < 1 or self.rank < 1:
            raise ValueError(
                f"DCFT needs kernel, stride and rank >= 1, got {self.kernel}, {self.stride}, "
                f"{self.rank}"
            )
        if self.stride > self.kernel:
            raise ValueError(
                f"DCFT stride {self.stride} > kernel {self.kernel} is refused: some subspace "
                "entries would never reach the update (the paper excludes it)"
            )
        if self.init not in INITS:
            raise ValueError(f"unknown DCFT init {self.init!r}; valid: {', '.join(INITS)}")
        if self.impl not in IMPLS:
            raise ValueError(f"unknown DCFT impl {self.impl!r}; valid: {', '.join(IMPLS)}")
        validate_constraint(self.constraint)


@register("dcft")
class Dcft(LowRankMethod):
    Options = DcftOptions
    label = "DCFT"
    slug_options = (("kernel", "k"), ("stride", "s"))

    def make_layer(self, name: str, base: nn.Linear) -> LinearAdapter:
        o = self.options
        return DcftLinear(
            base,
            o.kernel,
            o.stride,
            o.rank,
            o.alpha / o.r,
            o.init,
            o.constraint,
            o.impl,
            name=name,
        )
