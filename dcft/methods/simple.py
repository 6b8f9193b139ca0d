"""Methods that only choose which backbone tensors train: full fine-tuning, BitFit, head only."""

from __future__ import annotations

from .registry import Method, register


@register("full")
class FullFineTuning(Method):
    """Every parameter trains."""

    label = "Full FT"

    def trains_backbone_parameter(self, name: str) -> bool:
        return True


@register("bitfit")
class BitFit(Method):
    """Every bias of the backbone trains (LayerNorm biases included), plus the head."""

    label = "BitFit"

    def trains_backbone_parameter(self, name: str) -> bool:
        return name.endswith("bias")


@register("head")
class HeadOnly(Method):
    """Only the task head (classifier, pooler, QA outputs) trains: the floor every PEFT method
    should beat, and the baseline of the real-data test."""
