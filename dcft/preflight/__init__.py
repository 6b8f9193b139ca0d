"""Before a long sweep: run every distinct setting of a table for a few optimiser steps and price
the whole table (``python -m dcft.sweep tableN --preflight``; ``make preflight-tableN``)."""
