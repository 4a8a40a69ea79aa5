"""Memory and time of embedding one large micrograph under the default frame view.

Each size runs in a fresh process: the pretrained VGG16 to block4_conv3 (random weights:
memory and time do not depend on them), the default view (whole frame at scales 1, 0.71,
0.5, windows of at most 1024 px). The process first embeds a 256-px image (model built,
graph traced), then the large one; "extra" is the growth of its peak resident memory
during the large one. Printed: extra memory against the 2 GiB target, and seconds per
megapixel shown to the base against the smallest size's (1.0 = time linear in pixels).

    python benchmarks/large_image_memory.py            # 2048, 4096 and 8192 px
    python benchmarks/large_image_memory.py --sizes 2048,4096
"""

import argparse
import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    from microrep.config.stages import ViewConfig, pretrained_model_config
    from microrep.data.views import View
    from microrep.embedding.tiles import embed_images
    from microrep.nn.backbone import dtype_policy, policy_for
    from microrep.nn.tower import build_feature_tower
    import dataclasses
    side, precision = int(sys.argv[1]), sys.argv[2] == "bfloat16"
    model = dataclasses.replace(pretrained_model_config(), weights="none", mixed_precision=precision)
    with dtype_policy(policy_for(precision)):
        tower = build_feature_tower(model)
    view = View.of(ViewConfig(), model.input_size)
    rng = np.random.default_rng(0)
    embed_images(tower, [rng.integers(0, 255, (256, 256), dtype=np.uint8)], view, workers=0)
    image = rng.integers(0, 255, (side, side), dtype=np.uint8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    vector = embed_images(tower, [image], view, workers=0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "extra_mib": peak - before, "seconds": seconds,
                      "megapixels_shown": view.pixels(image.shape) / 1e6,
                      "finite": bool(np.isfinite(vector).all())}))
""")


def measure(side, precision):
    done = subprocess.run([sys.executable, "-c", CHILD, str(side), precision], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,4096,8192")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    rows = [measure(int(side), args.precision) for side in args.sizes.split(",")]
    first = rows[0]["seconds"] / rows[0]["megapixels_shown"]
    for row in rows:
        rate = row["seconds"] / row["megapixels_shown"]
        print(f"{row['side']} x {row['side']}: extra peak memory {row['extra_mib']:,.0f} MiB "
              f"({row['extra_mib'] / 2048:.2f} of the 2 GiB target), {row['seconds']:.0f} s for "
              f"{row['megapixels_shown']:.0f} megapixels shown, time per megapixel "
              f"{rate / first:.2f} x the {rows[0]['side']}-px image's")


if __name__ == "__main__":
    main()
