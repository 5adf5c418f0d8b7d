"""Stage `evaluate_baselines`: the rows no joint model takes part in, on the test pairs
-> reports/baselines.json (what the `evaluate` stage merges with the joint rows)."""

from maskopt.evaluation.run import evaluate_baselines
from maskopt.pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage(evaluate_baselines)
