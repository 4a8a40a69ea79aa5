"""Training and embedding throughput of the Siamese VGG16, as a share of the hardware ceiling.

Prints, in one run and on whatever backend KERAS_BACKEND selects, images/s for
training (pairs count as two images) and for embedding, per precision, and the
fraction of the device's ceiling that reached. The ceiling is measured in the
same run: the best dense matrix product rate this backend achieves on this
device (bfloat16 for mixed precision, float32 otherwise), so the ratio is ours
vs the hardware, not vs a datasheet. FLOPs come from the model's layers.

It also times the product's own pair pipeline (NumPy sampler and crops on the
host, fed through `keras.utils.PyDataset`) on UHCSDB-sized synthetic images, and
the step variants of `variants.py` (the earlier step and each change alone),
each checked against the product's model before it is timed.

    KERAS_BACKEND=jax python benchmarks/throughput.py --input-size 224 --batch-size 128
    python benchmarks/throughput.py --input-size 64 --steps 5          # a CPU check
    python benchmarks/throughput.py --precision mixed --variants max/twice,reshape/merged
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from microrep.config import ModelConfig  # noqa: E402
from microrep.nn.losses import ContrastiveLoss  # noqa: E402
from microrep.nn.tower import build_siamese, build_tower  # noqa: E402
from microrep.pairs import PairSampler, crops_from_plan, make_pydataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants import build_variant, check_variant  # noqa: E402

#: The UHCSDB frame once the data bar is cut off (rows, columns).
UHCSDB_FRAME = (484, 645)


def conv_flops_per_image(tower):
    """Forward multiply-adds x 2 of every Conv2D and Dense layer inside the tower."""
    total = 0
    stack = list(tower.layers)
    while stack:
        layer = stack.pop()
        if hasattr(layer, "layers") and layer.layers:
            stack.extend(layer.layers)
        elif isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kh, kw = layer.kernel_size
            channels_in = layer.input.shape[-1]
            total += 2 * height * width * kh * kw * channels_in * channels_out
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def matmul_ceiling(dtype, size, repeats=10):
    """Best dense matmul rate (FLOP/s) this backend reaches here, in `dtype`."""
    a = ops.cast(keras.random.normal((size, size), seed=1), dtype)
    b = ops.cast(keras.random.normal((size, size), seed=2), dtype)
    if keras.backend.backend() == "jax":
        import jax

        product = jax.jit(lambda x, y: x @ y)
        product(a, b).block_until_ready()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            product(a, b).block_until_ready()
            best = min(best, time.perf_counter() - start)
    else:
        ops.convert_to_numpy(ops.matmul(a, b))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            ops.convert_to_numpy(ops.sum(ops.matmul(a, b)))
            best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def synthetic_batches(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8)


def time_training(siamese, batch, size, steps, warmup):
    first, second = synthetic_batches(batch * steps, size, 0), synthetic_batches(batch * steps, size, 1)
    labels = (np.arange(batch * steps) % 2).astype("float32")
    siamese.fit([first[:batch * warmup], second[:batch * warmup]], labels[:batch * warmup],
                batch_size=batch, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    siamese.fit([first, second], labels, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    return 2 * batch * steps / seconds


def time_embedding(tower, batch, size, steps):
    images = synthetic_batches(batch * steps, size, 2)
    tower.predict(images[:batch], batch_size=batch, verbose=0)
    start = time.perf_counter()
    tower.predict(images, batch_size=batch, verbose=0)
    return batch * steps / (time.perf_counter() - start)


def synthetic_micrographs(count, seed=3):
    """Random uint8 frames of UHCSDB's size, 7 labels: stand-ins for the pipeline timing."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, UHCSDB_FRAME, dtype=np.uint8) for _ in range(count)]
    return images, np.arange(count) % 7


def host_pair_rate(size, batch, pairs=2048):
    """Images/s the host's NumPy pair pipeline (plan + crops, one core) produces."""
    images, labels = synthetic_micrographs(64)
    sampler = PairSampler(labels, [im.shape for im in images], size, pairs_per_epoch=pairs)
    start = time.perf_counter()
    plan_a, plan_b, _ = sampler.epoch_plan(0)
    for begin in range(0, pairs, batch):
        crops_from_plan(images, plan_a[begin:begin + batch], size)
        crops_from_plan(images, plan_b[begin:begin + batch], size)
    return 2 * pairs / (time.perf_counter() - start)


def time_pipeline_training(siamese, batch, size, steps, workers):
    """Training images/s fed by the product's PyDataset of sampled, cropped pairs."""
    images, labels = synthetic_micrographs(64)
    sampler = PairSampler(labels, [im.shape for im in images], size, pairs_per_epoch=batch * steps)
    kwargs = {"workers": workers, "use_multiprocessing": False} if workers else {}
    dataset = make_pydataset(sampler, images, batch, **kwargs)
    siamese.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
    start = time.perf_counter()
    siamese.fit(dataset, epochs=1, verbose=0)
    return 2 * batch * steps / (time.perf_counter() - start)


def run(args):
    results = []
    host_rate = host_pair_rate(args.input_size, args.batch_size)
    print(json.dumps({"host_pair_pipeline_images_per_s_one_core": host_rate}), flush=True)
    for precision in args.precision.split(","):
        mixed = precision == "mixed"
        ceiling = matmul_ceiling("bfloat16" if mixed else "float32", args.matmul_size)
        keras.utils.set_random_seed(0)
        reference = build_tower(ModelConfig(input_size=args.input_size, embedding_dim=64,
                                            weights="none", vgg_blocks=args.vgg_blocks,
                                            mixed_precision=mixed))
        flops = conv_flops_per_image(reference)
        reference_siamese = build_siamese(reference)
        for variant in args.variants.split(","):
            pool, tower_call = variant.split("/")
            tower, siamese = build_variant(reference, pool, tower_call)
            difference = check_variant(reference_siamese, siamese, args.input_size)
            siamese.compile(optimizer=keras.optimizers.Adam(1e-5), loss=ContrastiveLoss(1.0),
                            jit_compile=args.jit, steps_per_execution=args.steps_per_execution)
            train_rate = time_training(siamese, args.batch_size, args.input_size, args.steps, args.warmup)
            embed_rate = time_embedding(tower, args.embed_batch_size, args.input_size, args.steps)
            row = {
                "backend": keras.backend.backend(), "precision": precision, "variant": variant,
                "device": device_name(), "input_size": args.input_size, "vgg_blocks": args.vgg_blocks,
                "batch_pairs": args.batch_size, "steps_per_execution": args.steps_per_execution,
                "max_relative_difference_vs_product": difference,
                "gflop_forward_per_image": flops / 1e9,
                "matmul_ceiling_tflops": ceiling / 1e12,
                "train_images_per_s": train_rate, "embed_images_per_s": embed_rate,
                "train_fraction_of_ceiling": train_rate * 3 * flops / ceiling,
                "embed_fraction_of_ceiling": embed_rate * flops / ceiling,
                "train_ceiling_images_per_s": ceiling / (3 * flops),
                "embed_ceiling_images_per_s": ceiling / flops,
                "host_pair_pipeline_images_per_s_one_core": host_rate,
            }
            if args.pipeline_steps and variant == args.variants.split(",")[0]:
                row["pipeline_train_images_per_s"] = time_pipeline_training(
                    siamese, args.batch_size, args.input_size, args.pipeline_steps, args.workers)
            results.append(row)
            print(json.dumps(row), flush=True)
    print_table(results)
    return results


def device_name():
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', '')}"
    return f"cpu:{platform.processor() or platform.machine()} x{os.cpu_count()}"


def print_table(results):
    if not results:
        return
    print(f"\ndevice: {results[0]['device']}; host pair pipeline "
          f"{results[0]['host_pair_pipeline_images_per_s_one_core']:.0f} images/s on one core")
    print("backend    precision  variant          train img/s (of ceiling)   "
          "embed img/s (of ceiling)   via PyDataset   vs product")
    for r in results:
        pipeline = r.get("pipeline_train_images_per_s")
        pipeline = f"{pipeline:9.1f}" if pipeline else " " * 9
        print(f"{r['backend']:10s} {r['precision']:10s} {r['variant']:16s} "
              f"{r['train_images_per_s']:9.1f} ({r['train_fraction_of_ceiling']:6.1%})      "
              f"{r['embed_images_per_s']:9.1f} ({r['embed_fraction_of_ceiling']:6.1%})      "
              f"{pipeline}       {r['max_relative_difference_vs_product']:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--vgg-blocks", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per training step")
    parser.add_argument("--embed-batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="float32,mixed")
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--jit", default="auto", help="jit_compile setting for compile()")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="training steps fused into one device call")
    parser.add_argument("--variants", default="reshape/merged",
                        help="comma-separated POOL/TOWER step variants (see variants.py): "
                             "pool max|reshape, tower twice|merged; reshape/merged is the "
                             "product, max/twice the step before it")
    parser.add_argument("--pipeline-steps", type=int, default=0,
                        help="also time training fed by the product's PyDataset for this many steps")
    parser.add_argument("--workers", type=int, default=0, help="PyDataset worker threads")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.jit in ("true", "false"):
        args.jit = args.jit == "true"
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
