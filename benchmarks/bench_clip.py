"""Images per second of base, full, multi and canonical on a ViT-B-32-sized open_clip model (random weights).

All methods run in one process, interleaved round-robin after a warm-up, and the median of the repeats is
reported, so the ratios are measured side by side under the same machine load. Also reported: image-encoder
passes per image and the canonicaliser's own cost.

    python -m benchmarks clip                       # CPU, 1 thread, ~1-2 min on an idle machine
    python -m benchmarks clip --device cuda --images 64 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from hf_equivariant.models.clip.open_clip import EquivariantOpenCLIP

try:
    from . import output_dir
except ImportError:  # run as a script: python benchmarks/bench_clip.py
    from benchmarks import output_dir

METHODS = {  # name -> (strategy, aggregation, deduplicate)
    "base": ("none", "mean_prob", True),
    "full": ("full", "mean_prob", True),
    "multi": ("multi", "mean_prob", True),
    "multi_no_dedup": ("multi", "mean_prob", False),
    "canonical": ("canonical", "mean_prob", True),
    "max_prob": ("full", "max_prob", True),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks clip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=2, help="input images per call")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (CPU; 1 is steadiest on a shared machine)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--output-dir", default=None,
                        help="result folder (default: outputs/benchmarks, or benchmarks/results with --update-results)")
    parser.add_argument("--update-results", action="store_true",
                        help="overwrite the committed result files in benchmarks/results")
    parser.add_argument("--tag", default=None, help="suffix of the result files (default: device kind)")
    args = parser.parse_args(argv)
    args.output_dir = str(output_dir(args.update_results, args.output_dir))
    if args.threads:
        torch.set_num_threads(args.threads)
    import open_clip

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    base = open_clip.create_model(args.model, pretrained=None).to(args.device, dtype).eval()
    params = sum(p.numel() for p in base.visual.parameters())
    wrapper = EquivariantOpenCLIP(base, ["rot90", "flip"])
    size = wrapper.scorer.image_shape
    images = torch.randn(args.images, *size, generator=torch.Generator().manual_seed(0)).to(args.device, dtype)
    embed_dim = base.visual.output_dim
    class_embeds = torch.nn.functional.normalize(torch.randn(args.classes, embed_dim), dim=-1)
    class_embeds = class_embeds.to(args.device, dtype)

    def run(method: str) -> float:
        strategy, aggregation, dedupe = METHODS[method]
        wrapper.deduplicate = dedupe
        _sync(args.device)
        start = time.perf_counter()
        with torch.inference_mode():
            wrapper.zero_shot_logits(images, class_embeds, strategy, aggregation)
        _sync(args.device)
        return time.perf_counter() - start

    encodes = {}
    for method in METHODS:  # warm-up, and record encoder passes per image
        run(method)
        encodes[method] = wrapper.scorer.last_encoded_images / args.images
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:
            times[method].append(run(method))
    # Canonicaliser alone (the 8 dot products per image of multi/canonical).
    reference = wrapper.scorer.reference_for(images)
    canon = []
    for _ in range(max(3, args.repeats)):
        _sync(args.device)
        start = time.perf_counter()
        wrapper.action.canonical_elements(images, reference)
        _sync(args.device)
        canon.append(time.perf_counter() - start)

    median = {m: statistics.median(t) for m, t in times.items()}
    rows = []
    for method, (strategy, aggregation, dedupe) in METHODS.items():
        rows.append({"method": method, "strategy": strategy, "aggregation": aggregation, "deduplicate": dedupe,
                     "encodes_per_image": encodes[method], "median_s": median[method],
                     "images_per_s": args.images / median[method],
                     "time_vs_base": median[method] / median["base"],
                     "time_vs_full": median[method] / median["full"], "all_s": times[method]})
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    meta = {"model": args.model, "pretrained": None, "vision_parameters": params, "image_size": list(size),
            "images_per_call": args.images, "classes": args.classes, "repeats": args.repeats,
            "device": args.device, "device_name": device_name, "dtype": args.dtype,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "canonicaliser_median_s": statistics.median(canon)}
    tag = args.tag or ("gpu" if args.device.startswith("cuda") else "cpu")
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"clip_vit_b32_{tag}.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
        f.write("\n")
    lines = [f"# {args.model} (random weights, {params / 1e6:.0f}M vision parameters) image-side throughput, "
             f"{tag}", "",
             f"{args.images} images of {size[1]}x{size[2]} per call, {args.classes} classes, device `{args.device}` "
             f"({device_name}), {args.dtype}, {torch.get_num_threads()} torch threads; median of {args.repeats} "
             "interleaved repeats after a warm-up. Produced by `benchmarks/bench_clip.py`.", "",
             "| method | encodes/image | images/s | time vs base | time vs full |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['encodes_per_image']:g} | {r['images_per_s']:.1f} | "
                     f"{r['time_vs_base']:.2f}x | {r['time_vs_full']:.2f}x |")
    lines += ["", f"Canonicaliser alone (all 8 candidate poses, {args.images} images): "
                  f"{meta['canonicaliser_median_s'] * 1e3:.2f} ms."]
    with open(os.path.join(args.output_dir, f"clip_vit_b32_{tag}.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
