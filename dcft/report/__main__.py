"""``python -m dcft.report``: see dcft.report.cli."""

from dcft.report.cli import main

main()
