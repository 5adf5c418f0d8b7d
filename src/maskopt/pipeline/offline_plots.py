"""The page template for `dvc plots show` / `dvc plots diff` that draws with no network.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN, so offline it
stays blank. This template inlines the three libraries (bundled by vl-convert-python,
which ships them) and is registered as DVC's ``plots.html_template`` (.dvc/config),
so the plain commands render offline.

    python -m maskopt.pipeline.offline_plots            # writes .dvc/plots/offline.html
"""

from __future__ import annotations

import sys
from pathlib import Path

from maskopt.core.io import atomic_path

TEMPLATE = Path(".dvc/plots/offline.html")  # .dvc/config: plots.html_template

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>maskopt plots</title>
<script type="text/javascript">
{bundle}
</script>
<style>
body {{ font-family: sans-serif; margin: 16px; }}
table {{ border-spacing: 15px; }}
</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def page_template() -> str:
    import vl_convert

    bundle = vl_convert.javascript_bundle()  # defines window.vegaEmbed, vegaLite, vega
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:  # DVC fills these by plain text replacement
            raise RuntimeError(f"the Vega bundle contains {placeholder}")
    return PAGE.format(bundle=bundle)


def write_template(path: Path = TEMPLATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(page_template(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_template(Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE))
