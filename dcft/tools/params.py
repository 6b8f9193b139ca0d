"""Parameter audit: count every method/setting of the paper's Tables 1, 2, 4, 5 and 6 on the real
model shapes (built on the meta device from configs in this repo: nothing is downloaded or
allocated) and set our count beside the paper's #Params.

    python -m dcft.tools.params [--out results]     # writes results/params.md and results/params.csv
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dcft.methods import apply_method, count_parameters
from dcft.report.paper import parse_param_count
from dcft.run.models import build_model

TOLERANCE = 0.05


@dataclass(frozen=True)
class AuditRow:
    table: str
    model: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    reason: str = ""

    @property
    def setting(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.options.items()) or "-"


SQ = ["q", "v"]
ROWS: list[AuditRow] = [
    AuditRow("1", "deberta-v3-base", "full", paper="184M"),
    AuditRow("1", "deberta-v3-base", "bitfit", paper="0.1M"),
    AuditRow("1", "deberta-v3-base", "hadapter", {"bottleneck": 8}, "0.31M"),
    AuditRow("1", "deberta-v3-base", "padapter", {"bottleneck": 16}, "0.3M"),
    AuditRow("1", "deberta-v3-base", "lora", {"r": 1}, "0.17M"),
    AuditRow(
        "1",
        "deberta-v3-base",
        "sora",
        {"r": 8},
        "0.12M",
        "SoRA's count is the ranks left after its gates are sparsified in training; before "
        "training all r_max = 8 ranks count (this row is the upper bound)",
    ),
    AuditRow(
        "1",
        "deberta-v3-base",
        "lorafa",
        {"r": 1},
        "0.12M",
        "the paper's LoRA-FA row is a copy of its SoRA row (identical numbers); LoRA-FA r=1 "
        "trains only B: r * n_out per matrix",
    ),
    AuditRow("1", "deberta-v3-base", "dcft", {"kernel": 8}, "0.024M"),
    AuditRow("1", "deberta-v3-base", "dcft", {"kernel": 2}, "0.079M"),
    AuditRow(
        "1",
        "roberta-large",
        "full",
        paper="335M",
        reason="RoBERTa-large has 355M parameters; the paper's 335M reads as a typo",
    ),
    AuditRow("1", "roberta-large", "hadapter", {"bottleneck": 8}, "0.8M"),
    AuditRow("1", "roberta-large", "padapter", {"bottleneck": 16}, "0.8M"),
    AuditRow("1", "roberta-large", "lora", {"r": 8, "targets": SQ}, "0.8M"),
    AuditRow("1", "roberta-large", "lorafa", {"r": 16}, "3.7M"),
    AuditRow("1", "roberta-large", "dcft", {"kernel": 8}, "0.06M"),
    AuditRow("1", "roberta-large", "dcft", {"kernel": 2}, "0.21M"),
    AuditRow("2", "deberta-v2-xxlarge", "full", paper="1.5B"),
    AuditRow("2", "deberta-v2-xxlarge", "lora", {"r": 16, "targets": SQ}, "4.7M"),
    AuditRow("2", "deberta-v2-xxlarge", "dcft", {"kernel": 8}, "0.18M"),
    AuditRow("2", "deberta-v2-xxlarge", "dcft", {"kernel": 2}),
    *[
        AuditRow("4", "deberta-v3-base", "dcft", {"kernel": d}, p)
        for d, p in [(2, "0.079M"), (4, "0.041M"), (6, "0.029M"), (8, "0.024M"), (12, "0.023M")]
    ],
    *[
        AuditRow("5", "deberta-v3-base", "dcft", {"kernel": 8, "stride": s}, p)
        for s, p in [(1, "165.5K"), (2, "85K"), (4, "44.9K"), (8, "24.6K")]
    ],
    AuditRow("6", "deberta-v3-base", "dcft", {"kernel": 8, "targets": ["q", "k"]}, "6K"),
    AuditRow("6", "deberta-v3-base", "dcft", {"kernel": 8, "targets": ["q", "v"]}, "6K"),
    AuditRow("6", "deberta-v3-base", "dcft", {"kernel": 8, "targets": ["q", "k", "v"]}, "9K"),
    AuditRow(
        "6",
        "deberta-v3-base",
        "dcft",
        {"kernel": 8, "targets": ["q", "k", "v", "o"]},
        "18.4K",
        "q,k,v,o alone give 12,288 (12K); q,k,v,o plus one FFN matrix (ffn_in or ffn_out, 544 "
        "per layer) give 18,816 = 18.4K in binary units (next row). The authors' code does not "
        "explain it: it tests 'attention.output' and 'layer.output' (the FFN output) separately "
        "against its --lora_module string, so selecting q,k,v,o adapts no FFN matrix. Cause "
        "unknown; Table 6 runs both settings",
    ),
    AuditRow(
        "6",
        "deberta-v3-base",
        "dcft",
        {"kernel": 8, "targets": ["q", "k", "v", "o", "ffn_out"]},
        "18.4K",
    ),
    AuditRow(
        "6",
        "deberta-v3-base",
        "dcft",
        {"kernel": 8, "targets": "all"},
        "24K",
    ),
]


def audit_row(row: AuditRow) -> dict[str, Any]:
    model = build_model("config", row.model, device="meta")
    apply_method(model, row.method, **row.options)
    counts = count_parameters(model)
    paper = parse_param_count(row.paper, binary=row.method == "dcft") if row.paper else None
    ratio = counts["paper"] / paper if paper else None
    differs = ratio is not None and abs(ratio - 1) > TOLERANCE
    return {
        "table": row.table,
        "model": row.model,
        "method": row.method,
        "setting": row.setting,
        "ours": counts["paper"],
        "ours_with_head": counts["with_head"],
        "paper": row.paper or "-",
        "ratio": f"{ratio:.3f}" if ratio else "-",
        "reason": (row.reason or "UNEXPLAINED") if differs else "",
    }


def write_reports(results: list[dict[str, Any]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "params.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    lines = [
        "# Trainable parameters: ours vs the paper",
        "",
        "Counted the paper's way (every adapter tensor; task head and pooler excluded) on the real",
        "model shapes, built on the meta device by `python -m dcft.tools.params`. A reason is given",
        f"wherever our count and the paper's #Params differ by more than {TOLERANCE:.0%}.",
        "",
        "The paper prints every DCFT count in binary units (K = 1024, M = 1024^2): 169,488 / 1024",
        "= 165.5K (Table 5, stride 1), 24,192 / 1024^2 = 0.023M (Table 4, kernel 12), 6,144 / 1024",
        "= 6K (Table 6). DCFT ratios below use those units; the baselines' counts (from the",
        "AdaLoRA and LoRA papers) are decimal.",
        "",
        "| table | model | method | setting | ours | ours + head | paper | ratio | reason |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['table']} | {r['model']} | {r['method']} | {r['setting']} | {r['ours']:,} | "
        f"{r['ours_with_head']:,} | {r['paper']} | {r['ratio']} | {r['reason']} |"
        for r in results
    ]
    (out_dir / "params.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    args = parser.parse_args(argv)
    results = [audit_row(row) for row in tqdm(ROWS, desc="parameter audit", unit="row")]
    write_reports(results, args.out)
    print((args.out / "params.md").read_text())


if __name__ == "__main__":
    main()
