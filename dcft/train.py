"""One fine-tuning run from a Hydra config: ``python -m dcft.train model=minilm task=sst2
method=dcft seed=0 [overrides]`` (conf/config.yaml; ``experiment=table4`` picks a table's
sweep). From Python: ``dcft.run.runner.run(cfg)``.

The training stack is imported inside the job, so ``--help`` and ``--cfg job`` answer without
loading torch. Bad input (an unknown config option or key, a setting the runner refuses, a
malformed data file) is answered with one line naming it and exit code 2 (``dcft.cli``).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from dcft.cli import hydra_errors, input_errors
from dcft.run.config import CONF_DIR
from dcft.run.training_args import pass_through_overrides

PROG = "python -m dcft.train"


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> float | None:
    from dcft.data import DataFormatError, DataUnavailableError
    from dcft.data.custom import use_task_config
    from dcft.run.runner import check_settings, run_job
    from dcft.run.training_args import check_training_args
    from dcft.table_tags import tables_listing

    with input_errors(PROG, ValueError, DataUnavailableError):
        check_settings(cfg)
        check_training_args(cfg.trainer.get("args"))
        use_task_config(cfg.task)  # task=custom: its files, read and checked
    with input_errors(PROG, DataFormatError, DataUnavailableError):
        return run_job(cfg, tables=tables_listing)


def main() -> float | None:
    """Train one run (or a ``--multirun`` sweep); returns its headline dev score (what a Hydra
    sweeper such as Optuna optimises), None when nothing was scored."""
    sys.argv[1:] = pass_through_overrides(sys.argv[1:])
    with hydra_errors(PROG):
        return _job()


if __name__ == "__main__":
    main()
