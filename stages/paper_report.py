"""Stage `paper_report`: reports/paper.md (the paper's Tables I-V and figures, ours beside
the paper's numbers) and reports/figure_3.png, from evaluate's outputs and the α sweep."""

from maskopt.evaluation.paper_report import paper_report
from maskopt.pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(paper_report)
