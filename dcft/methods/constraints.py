"""Low-rank constraints shared by LoRA-family methods and DCFT.

Factors follow one orientation: ``A`` is (rank x fan_in side) and ``B`` is (fan_out side x rank),
so both Gram matrices ``A A^T`` and ``B^T B`` are (rank x rank).

- ``orth``: what the DCFT/AdaLoRA code optimises: ``||G - I||_F`` per factor, NOT squared.
- ``orth_sq``: the paper's Eq. 4, ``||A^T A - I||_F^2 + ||B B^T - I||_F^2``; identical to MPC_o of
  arXiv 2407.05417, so ``mpc_o`` is the same penalty under that paper's name.
- ``mpc_d``: the A term as above, the B term pushes only the off-diagonal of ``B^T B`` to zero.
- ``mpc_n``: no penalty; a ReLU between the two factors (handled by the layers).
The model-level regulariser is ``gamma * mean`` of these per-factor terms over all adapted layers.
"""

from __future__ import annotations

import torch

CONSTRAINTS = ("none", "orth", "orth_sq", "mpc_o", "mpc_d", "mpc_n")


def validate_constraint(name: str) -> str:
    if name not in CONSTRAINTS:
        raise ValueError(
            f"unknown constraint {name!r}; valid constraints: {', '.join(CONSTRAINTS)}"
        )
    return name


def _eye(gram: torch.Tensor) -> torch.Tensor:
    return torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)


def a_terms(name: str, a: torch.Tensor) -> torch.Tensor:
    """The A-factor terms of constraint ``name`` for a stack of A factors (L x rank x n): (L,)."""
    gram = a @ a.transpose(-2, -1)
    gap = gram - _eye(gram)
    if name == "orth":
        return torch.linalg.matrix_norm(gap)
    return gap.square().sum((-2, -1))


def b_terms(name: str, b: torch.Tensor) -> torch.Tensor:
    """The B-factor terms of constraint ``name`` for a stack of B factors (L x n x rank): (L,)."""
    gram = b.transpose(-2, -1) @ b
    if name == "orth":
        return torch.linalg.matrix_norm(gram - _eye(gram))
    if name == "mpc_d":
        return (
            (gram - torch.diag_embed(torch.diagonal(gram, dim1=-2, dim2=-1))).square().sum((-2, -1))
        )
    return (gram - _eye(gram)).square().sum((-2, -1))


def constraint_terms(name: str, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    """The per-factor penalty terms of constraint ``name`` on the pair (a, b)."""
    if name in ("none", "mpc_n"):
        return []
    return [a_terms(name, a[None])[0], b_terms(name, b[None])[0]]


def stacked_constraint_terms(
    name: str, pairs: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """Every pair's terms (``constraint_terms``) as one vector, computed a few ops per factor
    shape rather than per layer: the regulariser of a model with dozens of adapted layers."""
    if name in ("none", "mpc_n") or not pairs:
        return torch.zeros(0)
    terms = []
    for side, factors in ((a_terms, [a for a, _ in pairs]), (b_terms, [b for _, b in pairs])):
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for factor in factors:
            by_shape.setdefault(tuple(factor.shape), []).append(factor)
        terms += [side(name, torch.stack(group)) for group in by_shape.values()]
    return torch.cat(terms)
