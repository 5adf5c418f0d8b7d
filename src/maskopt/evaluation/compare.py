"""`maskopt compare A B`: did run B change the headline rows, beyond what rerunning
shows? For each headline row (``rows.ROWS``), the per-image PSNR and SSIM of B minus
A on the same test pairs: mean, wins and a 95 % paired bootstrap interval
(``statistics.paired_comparison``). Neither `dvc exp diff` (means only) nor MLflow
(one number per run) has this.

A and B are DVC revisions or experiment names; the workspace is B by default. Their
``reports/per_pair.json`` (the evaluate stage's) is read through DVC.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskopt.core.errors import MaskoptError
from maskopt.evaluation.markdown import header, interval, line
from maskopt.evaluation.rows import ROWS
from maskopt.evaluation.statistics import paired_comparison

PER_PAIR = "reports/per_pair.json"
METRICS = ("psnr", "ssim")
WORKSPACE = "workspace"


def read_per_pair(rev: str, root: Path = Path()) -> dict:
    """reports/per_pair.json at ``rev`` (``workspace``: the file on disk)."""
    if rev == WORKSPACE:
        path = root / PER_PAIR
        if not path.exists():
            raise MaskoptError(f"{path} not found: run the pipeline (make pipeline) first")
        return _checked(json.loads(path.read_text()), rev)
    import dvc.api
    from dvc.exceptions import DvcException, PathMissingError
    from scmrepo.exceptions import SCMError

    try:
        text = dvc.api.read(PER_PAIR, repo=str(root), rev=rev)
    except (FileNotFoundError, PathMissingError):
        raise MaskoptError(f"{rev}: has no {PER_PAIR} (made before per-pair results were "
                           "kept, or never evaluated)") from None
    except (DvcException, SCMError) as exc:
        raise MaskoptError(f"{rev}: not a revision or experiment of this project "
                           f"({str(exc).splitlines()[0]})") from None
    return _checked(json.loads(text), rev)


def _checked(per_pair: dict, rev: str) -> dict:
    missing = [key for key in ("names", *METRICS) if key not in per_pair]
    if missing:
        raise MaskoptError(f"{rev}: its {PER_PAIR} has no {', '.join(missing)} per pair "
                           "(made by an older maskopt); rerun its evaluate stage")
    return per_pair


def compare_runs(a: dict, b: dict) -> list[dict]:
    """B − A for each headline row and metric both runs have, paired by test pair."""
    if a["names"] != b["names"]:
        raise MaskoptError("the two runs were scored on different test pairs (another seed "
                           "or other data): a paired comparison needs the same pairs")
    out = []
    for row in (row.name for row in ROWS if row.headline):
        for metric in METRICS:
            if row in a[metric] and row in b[metric]:
                out.append({"row": row, "metric": metric,
                            **paired_comparison(b[metric][row], a[metric][row])})
    return out


def compare_markdown(a_name: str, b_name: str, comparisons: list[dict]) -> str:
    lines = [f"{b_name} − {a_name}, per test pair ({comparisons[0]['images']} pairs): mean "
             "difference [95 % paired bootstrap interval], and the pairs where "
             f"{b_name} scores higher. An interval that contains 0 is no change.", "",
             *header(["row", "metric", "difference [95 %]", "wins", "changed"])]
    for c in comparisons:
        changed = "yes" if c["low"] > 0 or c["high"] < 0 else "no"
        lines.append(line([c["row"], c["metric"].upper(), interval(c),
                           f"{c['wins']}/{c['images']}", changed]))
    return "\n".join(lines)
