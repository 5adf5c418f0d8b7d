"""The evaluation's rows, in one table: each row is a mask filled by an inpainter.

Everything that shows a row reads it from here: the evaluate stage (which rows it
fills and scores), tables.md, the grids, reports/metrics.json, paper.md's Table V and
the fixed-dilation sweep. Adding a row is one line in :data:`ROWS`; a claim about it
is one line in :func:`comparisons`; a row drawn by `dvc plots` (its series name in
``plotted``) is also listed in dvc.yaml's per-bucket plots (a test keeps them equal).

Masks: "joint" and "without_mel" are the jointly trained segmenters' (with and
without the mask expansion loss), "pretrained" the pretrained segmenter's — each the
segment that overlaps M_G most, the paper's protocol — and "gt" is M_G. Inpainters:
a network set ("pretrained", "joint", "without_mel", "random" = trained on random
masks, "finetuned_N"), OpenCV's "telea" or "ns", EdgeConnect's published networks
"edgeconnect" (when evaluate.edgeconnect_weights names them), or "external:NAME".
"""

from __future__ import annotations

from dataclasses import dataclass

MASKS = ("pretrained", "joint", "without_mel", "gt")
OPENCV = ("telea", "ns")
EXTERNAL = "external:"


@dataclass(frozen=True)
class Row:
    name: str
    mask: str  # one of MASKS
    inpainter: str
    label: str  # its description in tables.md; "{joint}" is the joint model's name
    grow: int = 0  # px the mask is grown by (negative: eroded), as in Table I
    grid: str | None = None  # its column in reports/grids/pairs_*.png
    table_v: str | None = None  # its column in Table V and Fig. 4 (the paper's name)
    headline: bool = False  # in reports/metrics.json (`dvc metrics diff`)
    plotted: str | None = None  # its series in dvc.yaml's per-bucket plots

    @property
    def external(self) -> str | None:
        """The external inpainter's name, None for the project's own inpainters."""
        return self.inpainter.removeprefix(EXTERNAL) if self.inpainter.startswith(EXTERNAL) \
            else None

    def describe(self, mask_expansion: bool = True) -> str:
        return self.label.format(joint="joint + MEL" if mask_expansion else "joint w/o MEL")


# In the order of the tables: the baselines first, the joint models last (as Table V).
ROWS = (
    Row("starting_point", "pretrained", "pretrained", "paper's starting point (pretrained "
        "segmenter's mask, pretrained inpainters)", grid="starting point", headline=True,
        plotted="starting point"),
    Row("joint_inpainters_pretrained_mask", "pretrained", "joint",
        "{joint} inpainters, pretrained segmenter's mask"),
    Row("telea_pretrained_mask", "pretrained", "telea", "OpenCV Telea, pretrained segmenter's "
        "mask", grid="Telea, pretr. mask", table_v="OpenCV Telea", headline=True,
        plotted="Telea, pretrained mask"),
    Row("ns_pretrained_mask", "pretrained", "ns", "OpenCV Navier-Stokes, pretrained "
        "segmenter's mask", table_v="OpenCV NS"),
    Row("telea_gt_mask", "gt", "telea", "OpenCV Telea, ground-truth mask"),
    # maskopt's own three inpainters trained on random masks: Table II's first column on the
    # GT mask, and on the pretrained mask the sample's stand-in for Table V's EdgeC
    Row("random_inpainters_gt_mask", "gt", "random",
        "inpainters trained on random masks, ground-truth mask"),
    Row("random_inpainters_pretrained_mask", "pretrained", "random",
        "inpainters trained on random masks, pretrained segmenter's mask",
        table_v="random-mask nets"),
    Row("edgeconnect_pretrained_mask", "pretrained", "edgeconnect", "EdgeConnect's "
        "published networks (evaluate.edgeconnect_weights), pretrained segmenter's mask",
        table_v="EdgeC"),
    Row("telea_joint_mask", "joint", "telea", "OpenCV Telea, {joint} segmenter's mask",
        grid="Telea, joint mask", plotted="Telea, joint mask"),
    Row("ns_joint_mask", "joint", "ns", "OpenCV Navier-Stokes, {joint} segmenter's mask"),
    Row("without_mel", "without_mel", "without_mel", "joint w/o MEL (its segmenter's mask, "
        "its inpainters; Table V's ablation)", table_v="w/o MEL"),
    Row("joint", "joint", "joint", "{joint} (its segmenter's mask, its inpainters)",
        grid="joint", table_v="Ours", headline=True, plotted="joint model"),
)

# The paper gives its mask sizes in pixels of COCO-sized images: Table I's d and Fig.
# 1's ±2 px. A run of another side scales them by side / PAPER_SIDE (128 px: ±1 px).
PAPER_SIDE = 256


def pixels_here(paper_px: int, image_size: int) -> int:
    """The paper's ``paper_px`` in this run's pixels, at least one whole pixel."""
    px = round(abs(paper_px) * image_size / PAPER_SIDE)
    return (1 if paper_px > 0 else -1) * max(1, px) if paper_px else 0


def comparisons(image_size: int) -> list[tuple[str, str, str]]:
    """(row A, row B, the claim "A beats B" in words): the paired per-image comparisons."""
    eroded = pixels_here(-2, image_size)
    return [
        ("joint", "starting_point", "joint beats the paper's starting point"),
        ("joint", "telea_pretrained_mask", "joint beats OpenCV Telea on the pretrained mask"),
        ("joint", "telea_joint_mask", "joint inpainters beat OpenCV Telea on the same mask"),
        ("gt_d0", "telea_gt_mask", "pretrained inpainters beat OpenCV Telea on the GT mask"),
        ("gt_d0", f"gt_d{eroded}", f"the exact GT mask beats the GT mask eroded by "
         f"{-eroded} px (the paper's 2 px at {PAPER_SIDE} px)"),
        ("gt_d0", "random_inpainters_gt_mask",
         "inpainters trained on object masks beat those trained on random masks (GT mask)"),
        ("joint", "random_inpainters_pretrained_mask",
         "joint beats random-mask inpainters on the pretrained mask"),
        ("joint", "edgeconnect_pretrained_mask",
         "joint beats EdgeConnect's published networks on the pretrained mask (EdgeC)"),
        ("joint", "without_mel", "joint beats joint training without the mask expansion loss"),
    ]


def grown_gt_row(d: int) -> Row:
    """Table I: the pretrained inpainters on M_G grown by d px (of this run's pairs)."""
    return Row(f"gt_d{d}", "gt", "pretrained", f"pretrained inpainters, ground-truth mask "
               f"{'grown' if d >= 0 else 'eroded'} by {abs(d)} px (Table I)", grow=d,
               plotted="pretrained inpainters, exact GT mask" if d == 0 else None)


def finetuned_row(pairs: int) -> Row:
    """Table III: the random-mask inpainters, the image one fine-tuned on ``pairs`` pairs."""
    return Row(f"finetuned_{pairs}_gt_mask", "gt", f"finetuned_{pairs}",
               f"inpainters trained on random masks, the image inpainter fine-tuned on "
               f"{pairs} object-mask pairs, ground-truth mask (Table III)")


def external_row(name: str) -> Row:
    """Table V: an external inpainter (``evaluate.external_inpainters``) on the pretrained mask."""
    return Row(f"external_{name}_pretrained_mask", "pretrained", EXTERNAL + name,
               f"external inpainter {name}, pretrained segmenter's mask", table_v=name)


def evaluation_rows(dilations: list[int], finetuned: list[int], external: list[str],
                    have: set[str]) -> list[Row]:
    """The rows of one evaluation: the table's, Table I's and III's, and the external
    ones; a row whose mask or inpainter is not in ``have`` is left out."""
    rows = [*ROWS, *map(grown_gt_row, dilations), *map(finetuned_row, finetuned),
            *map(external_row, external)]
    return [row for row in rows if row.mask in have
            and (row.inpainter in have or row.inpainter in OPENCV or row.external)]


JOINT_MODELS = ("joint", "without_mel")


def is_baseline(row: Row) -> bool:
    """A row no jointly trained network takes part in, filled in-process: the
    `evaluate_baselines` stage scores these while joint training runs."""
    return not row.external and row.mask not in JOINT_MODELS \
        and row.inpainter not in JOINT_MODELS


def table_v_rows(rows: list[Row]) -> list[Row]:
    """Table V's columns among ``rows``: the baselines, which fill the pretrained mask
    as the paper feeds PanopticFPN's mask to every baseline, then the joint models."""
    columns = [row for row in rows if row.table_v]
    return ([row for row in columns if row.mask == "pretrained"]
            + [row for row in columns if row.mask != "pretrained"])


def row_named(name: str) -> Row | None:
    """The row a name in reports/evaluation.json stands for (None: not a row)."""
    table = {row.name: row for row in ROWS}
    if name in table:
        return table[name]
    if name.startswith("gt_d"):
        return grown_gt_row(int(name.removeprefix("gt_d")))
    if name.startswith("finetuned_") and name.endswith("_gt_mask"):
        return finetuned_row(int(name.removeprefix("finetuned_").removesuffix("_gt_mask")))
    if name.startswith("external_") and name.endswith("_pretrained_mask"):
        return external_row(name.removeprefix("external_").removesuffix("_pretrained_mask"))
    return None


# reports/grids/<figure>_NNN.png: the project's own columns, the paper's Fig. 4 (Table V's
# rows on the same pairs) and Fig. 1 (one pair, its GT mask eroded, exact and grown)
FIGURES = ("pairs", "table_v", "figure_1")
