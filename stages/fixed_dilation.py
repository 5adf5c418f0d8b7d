"""Stage `fixed_dilation`: the learned mask against the pretrained mask grown by the best
fixed d -> reports/fixed_dilation.{json,md}, fixed_dilation_metrics.json, the plot (and
the same in the stage's MLflow run)."""

from maskopt.evaluation.fixed_dilation_run import fixed_dilation
from maskopt.pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(fixed_dilation)
