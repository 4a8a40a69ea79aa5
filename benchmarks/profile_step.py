"""Where one Siamese training step spends its device time, by kind of work (JAX backend).

Why: the throughput benchmark says how far training is from the hardware
ceiling, not why. This traces a few steps with the JAX profiler, reads the
optimised HLO that XLA dumps for the step, and joins the two: every op's time
goes to a kind (convolution forward / input gradient / weight gradient,
matrix products, max-pool forward / backward, other fused elementwise work in
the forward or backward pass, the optimizer), printed per step with each
convolution kind's achieved TFLOP/s.

    KERAS_BACKEND=jax python benchmarks/profile_step.py --input-size 224 --batch-size 128 --mixed
    KERAS_BACKEND=jax python benchmarks/profile_step.py --input-size 64 --batch-size 8   # CPU check
"""

import argparse
import collections
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

DUMP_DIR = tempfile.mkdtemp(prefix="microrep-hlo-")
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" --xla_dump_to={DUMP_DIR}"
                           " --xla_dump_hlo_as_text --xla_dump_hlo_module_re=.*train_step.*").strip()

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from microrep.config import ModelConfig  # noqa: E402
from microrep.nn.losses import ContrastiveLoss  # noqa: E402
from microrep.nn.tower import build_tower  # noqa: E402
from throughput import conv_flops_per_image, device_name  # noqa: E402
from variants import build_variant  # noqa: E402

INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S.*?\s([\w\-]+)\(")
CONV_TARGETS = {"__cudnn$convForward": "conv forward", "__cudnn$convBiasActivationForward": "conv forward",
                "__cudnn$convBackwardInput": "conv input gradient",
                "__cudnn$convBackwardFilter": "conv weight gradient"}


def parse_hlo(text):
    """{instruction name: (opcode, line)} and {computation name: [lines]} of an HLO dump."""
    instructions, computations, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and "=" not in line.split("{")[0]:
            current = header.group(1)
            continue
        match = INSTRUCTION.match(line)
        if match:
            instructions[match.group(1)] = (match.group(2), line)
            if current:
                computations[current].append(line)
    return instructions, computations


def called_lines(line, computations, depth=0):
    """The instruction lines of computations a fusion or call reaches, recursively."""
    names = re.findall(r"(?:calls|to_apply|called_computations)=\{?%?([\w.\-]+)", line)
    lines = []
    for name in names:
        for inner in computations.get(name, []):
            lines.append(inner)
            if depth < 3:
                lines.extend(called_lines(inner, computations, depth + 1))
    return lines


def classify(opcode, line, computations):
    """The kind of work one top-level HLO instruction does."""
    inner = [line] + called_lines(line, computations)
    joined = "\n".join(inner)
    for target, kind in CONV_TARGETS.items():
        if target in joined:
            return kind
    names = " ".join(re.findall(r'op_name="([^"]*)"', joined)).lower()
    if opcode == "convolution" or " convolution(" in joined:
        return "conv (XLA-emitted)" + (" backward" if "transpose(" in names else " forward")
    if "select-and-scatter(" in joined or "select_and_scatter" in joined:
        return "max-pool backward (select-and-scatter)"
    if "reduce-window(" in joined:
        return "max-pool forward (reduce-window)"
    if "cublas" in joined or "triton_gemm" in joined or " dot(" in joined:
        return "matrix product"
    if "adam" in names or "optimizer" in names or "/apply" in names:
        return "optimizer"
    if "transpose(" in names:
        return "other, backward pass"
    if opcode in ("copy", "transpose", "copy-start", "copy-done"):
        return "layout copies"
    return "other, forward pass"


def op_times(trace_dir, module_filter="train_step"):
    """Total time per HLO op of the step's module: GPU kernels, or CPU thunks.

    On a GPU every kernel carries the `hlo_op` and `hlo_module` it runs for;
    the stream lines are summed (or the "XLA Ops" line alone where the trace
    has one, so nothing counts twice). A kernel without an `hlo_op` keeps its
    kernel name, prefixed "kernel:".
    """
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))
    profile = jax.profiler.ProfileData.from_file(files[-1])
    times, counts = collections.Counter(), collections.Counter()
    for plane in profile.planes:
        lines = list(plane.lines)
        if plane.name.startswith("/device:"):
            ops_lines = [line for line in lines if line.name == "XLA Ops"]
            lines = ops_lines or [line for line in lines if line.name.startswith("Stream")]
        for line in lines:
            for event in line.events:
                stats = dict(event.stats)
                if module_filter not in str(stats.get("hlo_module", "")):
                    continue
                op = str(stats.get("hlo_op") or f"kernel:{event.name}")
                times[op] += event.duration_ns
                counts[op] += 1
    return times, counts


def classify_kernel(name):
    """A kind from a GPU kernel's name, for kernels the trace did not tie to an HLO op."""
    lowered = name.lower()
    for marker, kind in (("wgrad", "conv weight gradient"), ("dgrad", "conv input gradient"),
                         ("fprop", "conv forward"), ("conv", "conv forward"),
                         ("gemm", "matrix product"), ("select_and_scatter", "max-pool backward (select-and-scatter)")):
        if marker in lowered:
            return kind
    return "unmatched kernels"


def step_module_text():
    candidates = [f for f in glob.glob(os.path.join(DUMP_DIR, "*train_step*after_optimizations.txt"))
                  if "buffer" not in f and "memory" not in f]
    if not candidates:
        raise SystemExit(f"no optimised HLO of the train step was dumped in {DUMP_DIR}")
    return Path(max(candidates, key=os.path.getsize)).read_text()


def profile(args):
    keras.utils.set_random_seed(0)
    tower = build_tower(ModelConfig(input_size=args.input_size, embedding_dim=64, weights="none",
                                    vgg_blocks=args.vgg_blocks, mixed_precision=args.mixed))
    flops = conv_flops_per_image(tower)
    pool, tower_call = args.variant.split("/")
    tower, siamese = build_variant(tower, pool, tower_call)
    siamese.compile(optimizer=keras.optimizers.Adam(1e-5), loss=ContrastiveLoss(1.0))
    rng = np.random.default_rng(0)
    count = args.batch_size * args.steps
    pairs = [rng.integers(0, 256, (count, args.input_size, args.input_size, 1), dtype=np.uint8)
             for _ in range(2)]
    labels = (np.arange(count) % 2).astype("float32")
    siamese.fit(pairs, labels, batch_size=args.batch_size, epochs=1, verbose=0)  # compile, warm up
    trace_dir = tempfile.mkdtemp(prefix="microrep-trace-")
    jax.profiler.start_trace(trace_dir)
    start = time.perf_counter()
    siamese.fit(pairs, labels, batch_size=args.batch_size, epochs=1, verbose=0)
    wall = time.perf_counter() - start
    jax.profiler.stop_trace()
    try:
        return summarise(args, flops, wall, *op_times(trace_dir))
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)
        shutil.rmtree(DUMP_DIR, ignore_errors=True)


def summarise(args, flops, wall, times, counts):
    instructions, computations = parse_hlo(step_module_text())
    by_kind, ops_of_kind = collections.Counter(), collections.defaultdict(list)
    for op, nanoseconds in times.items():
        opcode, line = instructions.get(op, ("?", ""))
        if op.startswith("kernel:"):
            kind = classify_kernel(op)
        else:
            kind = classify(opcode, line, computations) if line else "unmatched"
        by_kind[kind] += nanoseconds
        ops_of_kind[kind].append((nanoseconds, op))
    steps = args.steps
    images = 2 * args.batch_size
    total = sum(by_kind.values())
    rows = []
    for kind, nanoseconds in by_kind.most_common():
        per_step_ms = nanoseconds / steps / 1e6
        tflops = None
        if kind.startswith("conv") and nanoseconds:
            tflops = images * flops * steps / (nanoseconds / 1e9) / 1e12
        rows.append({"kind": kind, "ms_per_step": per_step_ms, "share": nanoseconds / total,
                     "tflops_if_one_pass_of_the_forward_flops": tflops,
                     "top_ops": [op for _, op in sorted(ops_of_kind[kind], reverse=True)[:5]]})
    summary = {"device": device_name(), "input_size": args.input_size, "batch_pairs": args.batch_size,
               "mixed_precision": args.mixed, "variant": args.variant, "steps": steps,
               "wall_ms_per_step": wall / steps * 1e3, "op_ms_per_step": total / steps / 1e6,
               "train_images_per_s_while_tracing": images * steps / wall,
               "forward_gflop_per_image": flops / 1e9, "kinds": rows}
    print_summary(summary)
    return summary


def print_summary(summary):
    print(f"\n{summary['device']}  {summary['input_size']}px  {summary['batch_pairs']} pairs/step  "
          f"{'bfloat16' if summary['mixed_precision'] else 'float32'}  {summary['variant']}: "
          f"{summary['wall_ms_per_step']:.1f} ms/step wall, {summary['op_ms_per_step']:.1f} ms in ops")
    print(f"{'kind':42s} {'ms/step':>9s} {'share':>7s} {'TFLOP/s':>8s}")
    for row in summary["kinds"]:
        tflops = row["tflops_if_one_pass_of_the_forward_flops"]
        print(f"{row['kind']:42s} {row['ms_per_step']:9.2f} {row['share']:7.1%} "
              f"{'' if tflops is None else f'{tflops:8.1f}'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--vgg-blocks", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per training step")
    parser.add_argument("--steps", type=int, default=3, help="steps traced")
    parser.add_argument("--mixed", action="store_true", help="bfloat16 mixed precision")
    parser.add_argument("--variant", default="reshape/merged", help="POOL/TOWER, as in throughput.py")
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()
    summary = profile(args)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
