"""Stage `evaluate`: the comparison rows on the test pairs -> reports/metrics.json (the
headline numbers), evaluation.json (all of them), tables.md, plots/, grids/ (and the
same in the stage's MLflow run)."""

from maskopt.evaluation.run import evaluate
from maskopt.pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(evaluate)
