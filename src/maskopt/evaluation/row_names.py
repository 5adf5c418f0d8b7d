"""Names of the evaluation's rows and figures that are built from a value (a pair count,
an inpainter's name), each with the parser that reads the value back: the evaluate
stage makes them, the paper report reads them."""

from __future__ import annotations

# reports/grids/<figure>_NNN.png: the project's own columns, the paper's Fig. 4 (Table V's
# rows on the same pairs) and Fig. 1 (one pair, its GT mask eroded, exact and grown)
FIGURES = ("pairs", "table_v", "figure_1")


def finetuned_row(pairs: int) -> str:
    return f"finetuned_{pairs}_gt_mask"


def finetuned_pairs(row: str) -> int | None:
    """N of a :func:`finetuned_row`, None for any other row."""
    if row.startswith("finetuned_") and row.endswith("_gt_mask"):
        return int(row.removeprefix("finetuned_").removesuffix("_gt_mask"))
    return None


def external_row(name: str) -> str:
    return f"external_{name}_pretrained_mask"


def external_name(row: str) -> str | None:
    """The inpainter's name of an :func:`external_row`, None for any other row."""
    if row.startswith("external_") and row.endswith("_pretrained_mask"):
        return row.removeprefix("external_").removesuffix("_pretrained_mask")
    return None
