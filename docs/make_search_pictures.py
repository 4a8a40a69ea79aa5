"""Draw README's pictures of `microrep search` and `microrep explore` from real data.

Embeds the UHCSDB development copy with the pretrained VGG16 (block4_conv3
mean-pooled over 3x3 tiles, ImageNet weights from a local file), writes the
neighbours grid of three queries (other samples only) and a screenshot of the
explorer in headless chromium with a point clicked; prints how long the explorer
took to open and draw (the target: under 3 s for the 308 images). Outputs: docs/neighbours.png,
docs/explorer.png (small; the data itself is never committed).

    python docs/make_search_pictures.py [--data-dir ../shared/data/uhcsdb-dev]
        [--weights ../shared/weights/vgg16_imagenet_notop.weights.h5]
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image  # noqa: E402

from microrep.cli import main  # noqa: E402


def shrink(source, target, width):
    image = Image.open(source).convert("RGB")
    image.thumbnail((width, width * 4))
    image.save(target, optimize=True, quality=85)


def screenshot(page, target, point=40):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.support.ui import WebDriverWait
    from test_explore import POINT_PIXEL, chrome

    with tempfile.TemporaryDirectory() as profile:
        driver = chrome(Path(profile))
        try:
            started = time.perf_counter()
            driver.get(page.as_uri())
            x, y = WebDriverWait(driver, 60, poll_frequency=0.02).until(
                lambda d: d.execute_script(POINT_PIXEL, point))
            print(f"explorer opened and drawn in headless chromium in "
                  f"{time.perf_counter() - started:.2f} s (cold start)")
            actions = ActionBuilder(driver)
            actions.pointer_action.move_to_location(int(x), int(y))
            actions.pointer_action.click()
            actions.perform()
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "return Bokeh.documents[0].get_model_by_name('neighbours').text.includes('nearest')"))
            driver.save_screenshot(str(target))
        finally:
            driver.quit()


def run(args):
    work = Path(tempfile.mkdtemp(prefix="microrep-pictures-"))
    try:
        assert main(["embed", "--pretrained", "--data", "uhcsdb", "--data-dir", args.data_dir,
                     "--weights", args.weights, "--input-size", "224", "--vgg-blocks", "4",
                     "--mixed-precision", "--out", str(work / "uhcsdb-dev")]) == 0
        assert main(["search", "--index", str(work / "uhcsdb-dev"), "--query-rows", "3,120,250",
                     "--exclude-same-group", "--k", "5", "--out", str(work / "search")]) == 0
        shrink(work / "search" / "neighbours.png", ROOT / "docs" / "neighbours.png", 640)
        assert main(["explore", str(work / "uhcsdb-dev"), "--out", str(work / "explorer.html"),
                     "--thumbnail-size", "80"]) == 0
        screenshot(work / "explorer.html", work / "explorer.png")
        shrink(work / "explorer.png", ROOT / "docs" / "explorer.png", 720)
        print("wrote docs/neighbours.png and docs/explorer.png")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = ROOT.parent / "shared"
    parser.add_argument("--data-dir", default=str(shared / "data" / "uhcsdb-dev"))
    parser.add_argument("--weights", default=str(shared / "weights" / "vgg16_imagenet_notop.weights.h5"))
    run(parser.parse_args())
