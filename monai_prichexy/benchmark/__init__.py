"""The privacy / utility benchmark of PriCheXy-Net on a data folder (the paper's Table 1, extended).

Rows (:mod:`.rows`): real images, PriCheXy-Net at each mu each followed by a random warp of
the same displacement, Gaussian blur, DP-Pix, Privacy-Net. For each row (:mod:`.summary`):
the worst case over the attackers (Siamese, metric learning, pixel correlation) retrained on
the anonymized release, mean +- std over attack seeds, pair- and patient-weighted; retrieval
P@1 and mAP@R; the original classifier's utility with bootstrap CIs; displacement, folds and
SSIM; privacy closure and utility retention; learned minus random warp with a sign test. The
tables and the closure-retention plot (:mod:`.report`) are rendered from ``benchmark.json``.
"""

from .report import markdown_tables, plot_frontier, update_readme_section
from .rows import benchmark_rows, control_spec, model_rows
from .run import main, render, run_benchmark
from .summary import PAPER_POINT, PAPER_TABLE1, closure, paired_difference, retention, summarise, summary_row

__all__ = [
    "PAPER_POINT",
    "PAPER_TABLE1",
    "benchmark_rows",
    "closure",
    "control_spec",
    "main",
    "markdown_tables",
    "model_rows",
    "paired_difference",
    "plot_frontier",
    "render",
    "retention",
    "run_benchmark",
    "summarise",
    "summary_row",
    "update_readme_section",
]
