"""DCFT's update computed from its factors, for any kernel d and stride s <= d: the structured path.

With H = (n - d) / s + 1 windows of width d at offsets i * s, the transposed convolution of
F = a^T b^T (a: k x H_in, b: H_out x k) by the d x d kernel C gives, for one token x,

    x @ Delta^T = spread_b(contract_a(x) @ C),

    contract_a(x)[r, u] = sum_i a[r, i] x[i*s + u]             (k x d: "hidden")
    spread_b(m)[j*s + v] = sum_r b[j, r] m[r, v]                (n_out)

so a layer costs k * d * (n_in / s + d + n_out) multiply-adds per token (s = d: LoRA r=k's
k * (n_in + n_out) plus k * d^2), never the dense n_in x n_out Delta^T. How each product runs
on a CPU was chosen by measurement (results/bench/profile_notes.md):

- ``contract`` with s = d is one batched product with x's (H x d) blocks (``bmm``): k * n_in per
  token, about LoRA r=k's down-projection. With s < d the windows overlap and one GEMM with the
  (k*d x n) window matrix of a (``windows``: entry (r, u), i*s + u is a[r, i]) is faster than d/s
  block products, though it multiplies (s - 1)/s of its entries by zero.
- ``spread_`` and the factor gradients (``window_grad``) are GEMMs with inner size k*d against the
  window matrix (or folding a k*d x n product back onto its windows): on the products' outer
  sizes they cost what LoRA r=1's do, and the alternatives (batched outer products, broadcast
  multiply-adds) measured slower.

``FusedDcftLinear`` runs the frozen Linear and this update as one op (one output, one input
gradient, as ``FusedLowRankLinear``), keeping only x, the weight and a, b, C for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def windows(f: torch.Tensor, n: int, kernel: int, stride: int) -> torch.Tensor:
    """The (k*d x n) matrix whose row (r, u) holds f[r, i] at column i*s + u (zeros elsewhere):
    ``x @ windows(a).T`` is ``contract(x, a)`` and ``y @ windows(b^T)`` spreads y over b."""
    k, h = f.shape
    band = f.new_zeros(k, kernel, n)
    diagonal = band.as_strided((k, h, kernel), (kernel * n, stride, n + 1))
    diagonal.copy_(f[:, :, None].expand(k, h, kernel))
    return band.view(k * kernel, n)


def fold_windows(g: torch.Tensor, h: int, kernel: int, stride: int) -> torch.Tensor:
    """The adjoint of ``windows``: (k, h) sums of g (k*d x n) over each window's d entries."""
    g = g.contiguous()
    n = g.shape[1]
    k = g.shape[0] // kernel
    on_windows = g.as_strided((k, h, kernel), (kernel * n, stride, n + 1), g.storage_offset())
    return on_windows.sum(-1)


def contract(x: torch.Tensor, f: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """(T, k, d): sum_i f[r, i] x[t, i*s + u] for x (T x n) and f (k x H)."""
    tokens, n = x.shape
    k, h = f.shape
    if stride == kernel:
        return torch.bmm(f.expand(tokens, k, h), x.reshape(tokens, h, kernel))
    return F.linear(x, windows(f, n, kernel, stride)).view(tokens, k, kernel)


def spread_(out: torch.Tensor, f: torch.Tensor, y: torch.Tensor, kernel: int, stride: int) -> None:
    """out[t, i*s + u] += sum_r f[r, i] y[t, r, u], in place (out: T x n, f: k x H)."""
    out.addmm_(y.reshape(out.shape[0], -1), windows(f, out.shape[1], kernel, stride))


def window_grad(y: torch.Tensor, z: torch.Tensor, h: int, kernel: int, stride: int) -> torch.Tensor:
    """(k, H): sum_{t, u} y[t, r, u] z[t, i*s + u], the gradient of f in contract/spread_."""
    return fold_windows(y.reshape(z.shape[0], -1).T @ z, h, kernel, stride)


class FusedDcftLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias) + scale * x @ Delta^T`` with Delta^T the transposed convolution
    of a^T b^T by C at ``stride``, as one op; ``weight=None`` gives the update alone. With
    ``relu``, the hidden contract_a(x) goes through a ReLU before C (MPC_n, stride == kernel).

    Computation runs in the output's dtype (bf16/fp16 under CUDA autocast); each gradient is
    returned in its input's dtype. Backward recomputes the (tokens x k*d) hidden from x."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        a: torch.Tensor,
        b: torch.Tensor,
        kernel: torch.Tensor,
        scale: float,
        stride: int,
        relu: bool,
    ) -> torch.Tensor:
        d = kernel.shape[0]
        n_out = (b.shape[0] - 1) * stride + d
        x2d = x.reshape(-1, x.shape[-1])
        no_base = weight is None
        out = x2d.new_zeros(x2d.shape[0], n_out) if no_base else F.linear(x2d, weight, bias)
        dtype = out.dtype
        hidden = contract(x2d.to(dtype), a.to(dtype), d, stride)
        if relu:
            hidden = hidden.relu_()
        mixed = hidden @ (kernel * scale).to(dtype)
        spread_(out, b.T.to(dtype), mixed, d, stride)
        ctx.save_for_backward(x, weight, a, b, kernel)
        ctx.scale, ctx.stride, ctx.relu = scale, stride, relu
        return out.view(*x.shape[:-1], n_out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight, a, b, kernel = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b, need_kernel = ctx.needs_input_grad[:6]
        d, stride, dtype = kernel.shape[0], ctx.stride, grad_out.dtype
        grad2d = grad_out.reshape(-1, grad_out.shape[-1])
        x2d = x.reshape(-1, x.shape[-1]).to(dtype)
        a_c, b_t = a.to(dtype), b.T.contiguous().to(dtype)
        scaled = (kernel * ctx.scale).to(dtype)
        hidden = contract(x2d, a_c, d, stride)
        grad_mixed = contract(grad2d, b_t, d, stride)
        grad_hidden = grad_mixed @ scaled.T
        if ctx.relu:
            grad_hidden = grad_hidden.mul_(hidden > 0)
            hidden = hidden.relu_()
        grad_x = grad_w = grad_bias = grad_a = grad_b = grad_kernel = None
        if need_x:
            no_base = weight is None
            grad_x = grad2d.new_zeros(x2d.shape) if no_base else grad2d @ weight.to(dtype)
            spread_(grad_x, a_c, grad_hidden, d, stride)
            grad_x = grad_x.view(x.shape).to(x.dtype)
        if need_w:
            grad_w = (grad2d.T @ x2d).to(weight.dtype)
        if need_bias:
            grad_bias = grad2d.sum(0).to(weight.dtype)
        if need_a:
            grad_a = window_grad(grad_hidden, x2d, a.shape[1], d, stride).to(a.dtype)
        if need_b:
            grad_b = window_grad(hidden @ scaled, grad2d, b.shape[0], d, stride).T.to(b.dtype)
        if need_kernel:
            grad_kernel = hidden.reshape(-1, d).T @ grad_mixed.reshape(-1, d)
            grad_kernel = (grad_kernel * ctx.scale).to(kernel.dtype)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, grad_kernel, None, None, None
