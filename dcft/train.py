"""One fine-tuning run from a Hydra config: ``python -m dcft.train model=minilm task=sst2
method=dcft seed=0 [overrides]`` (conf/config.yaml; ``experiment=table4`` picks a table's
sweep). From Python: ``dcft.run.runner.run(cfg)``.

The training stack is imported inside ``main``, so ``--help`` and ``--cfg job`` answer without
loading torch.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dcft.run.config import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train one run; returns its headline dev score (what a Hydra sweeper such as Optuna
    optimises), None when nothing was scored."""
    from dcft.run.runner import run_job

    return run_job(cfg)


if __name__ == "__main__":
    main()
