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


def _gram_a(a: torch.Tensor) -> torch.Tensor:
    return a @ a.T


def _gram_b(b: torch.Tensor) -> torch.Tensor:
    return b.T @ b


def _identity_gap(gram: torch.Tensor) -> torch.Tensor:
    return gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)


def constraint_terms(name: str, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    """The per-factor penalty terms of constraint ``name`` on the pair (a, b)."""
    if name in ("none", "mpc_n"):
        return []
    gap_a = _identity_gap(_gram_a(a))
    if name == "orth":
        return [
            torch.linalg.matrix_norm(gap_a),
            torch.linalg.matrix_norm(_identity_gap(_gram_b(b))),
        ]
    if name in ("orth_sq", "mpc_o"):
        return [gap_a.square().sum(), _identity_gap(_gram_b(b)).square().sum()]
    gram_b = _gram_b(b)
    return [gap_a.square().sum(), (gram_b - torch.diag(torch.diagonal(gram_b))).square().sum()]
