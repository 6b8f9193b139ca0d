"""Records -> the paper's tables and figures beside its numbers (``python -m dcft.report``)."""
