"""The pieces every report is written with (tables.md, paper.md, fixed_dilation.md):
numbers to a metric's digits, "ours (paper)" cells, table lines and paired intervals."""

from __future__ import annotations

DIGITS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2}


def number(value, digits: int) -> str:
    """``value`` to ``digits`` decimals; "–" where there is none."""
    return "–" if value is None else f"{value:.{digits}f}"


def cell(ours, paper, metric: str) -> str:
    """Our number, with the paper's in brackets where it has one."""
    mine = number(ours, DIGITS[metric])
    return mine if paper is None else f"{mine} ({paper:.{DIGITS[metric]}f})"


def header(columns: list[str]) -> list[str]:
    """A table's first two lines."""
    return [line(columns), "|" + "---|" * len(columns)]


def line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def interval(c: dict, digits: int = 2) -> str:
    """A paired comparison's mean difference and 95 % interval."""
    return (f"{c['mean_difference']:+.{digits}f} [{c['low']:+.{digits}f}, "
            f"{c['high']:+.{digits}f}]")
