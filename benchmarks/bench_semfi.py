"""Cost of one DiT step: base Wan vs. SemFi's merged Mixture-of-LoRA vs. the official 7-branch form.

Runs on the CPU with a mid-size random Wan DiT (dim 512, 4 blocks, head size 128 like the
real model) on a 480p-shaped latent (832x480 -> 104x60 latent, patchified 52x30 per latent
frame), with random SemFi LoRAs (rank 16, all 7 per adapted linear). The variants run interleaved, in a
rotating order, round after round; each forward is timed in CPU time of this process, and the
fastest round of each is compared (the least disturbed by other work on the machine), the
median printed beside it:

- base:     Wan's DiT as loaded;
- control:  a second, identical copy of base: base/control shows the measurement noise;
- merged:   universal + one expert LoRA merged into the weights (what sfi runs);
- unmerged: every adapted linear evaluates all 7 LoRA branches (A and B with bias) and
            multiplies the 5 unused ones by 0.0, as the official code does;
- ours:     our exportable forward (``backends/dit.py``) on the merged weights;
- inputs:   our forward on the universal-merged weights with the expert's rank-16 A/B as inputs
            (what the onnx and tensorrt backends run: one graph for every expert);
- onnx:     that graph exported and run by onnxruntime on the CPU (the onnx backend).

Then it works out, from FLOPs, what inputs/ours becomes at Wan2.1-14B's dimensions (dim 5120,
ffn 13824, 40 blocks, rank 16) for 81 frames at 480p, where the low-rank branches are a far
smaller share of each linear than at dim 512.

Usage: .venv/bin/python benchmarks/bench_semfi.py [--latent-frames 2] [--rounds 9] [--threads 1]
Targets: merged/base <= 1.01, unmerged/merged >= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from diffsynth.models.wan_video_dit import WanModel  # noqa: E402
from diffsynth.pipelines.wan_video import model_fn_wan_video  # noqa: E402

from engines.semfi_parts.backends import store  # noqa: E402
from engines.semfi_parts.backends.denoisers import DiTSource, onnx_graph  # noqa: E402
from engines.semfi_parts.backends.dit import ExportableDiT  # noqa: E402
from engines.semfi_parts.backends.onnx_graph import OnnxDenoiser  # noqa: E402
from engines.semfi_parts.mol import LORA_COUNT, LORA_SCALE, SITES, LoRA, MixtureOfLoRA  # noqa: E402

DIM, FFN, HEADS, LAYERS, TEXT_DIM, RANK = 512, 1536, 4, 4, 4096, 16
LATENT_HEIGHT, LATENT_WIDTH = 480 // 8, 832 // 8
EXPERT = 4


def build_dit(seed: int = 0) -> WanModel:
    torch.manual_seed(seed)
    return WanModel(dim=DIM, in_dim=36, ffn_dim=FFN, out_dim=16, text_dim=TEXT_DIM, freq_dim=256, eps=1e-6,
                    patch_size=(1, 2, 2), num_heads=HEADS, num_layers=LAYERS, has_image_input=True).eval().requires_grad_(False)


def random_loras(dit: WanModel) -> dict[str, list[LoRA]]:
    generator = torch.Generator().manual_seed(1)
    loras = {}
    for block in range(LAYERS):
        for layer in SITES.values():
            name = f"blocks.{block}.{layer}"
            linear = dit.get_submodule(name)
            out_features, in_features = linear.out_features, linear.in_features
            loras[name] = [LoRA(torch.randn(RANK, in_features, generator=generator) * in_features ** -0.5,
                                torch.randn(RANK, generator=generator) * 0.1,
                                torch.randn(out_features, RANK, generator=generator) * 0.1,
                                torch.randn(out_features, generator=generator) * 0.01)
                           for _ in range(LORA_COUNT)]
    return loras


class SevenBranchLinear(torch.nn.Module):
    """The official evaluation: base linear plus all 7 LoRA branches, unused ones times 0.0."""

    def __init__(self, base: torch.nn.Linear, loras: list[LoRA], expert: int) -> None:
        super().__init__()
        self.base = base
        self.downs = torch.nn.ModuleList()
        self.ups = torch.nn.ModuleList()
        for lora in loras:
            down = torch.nn.Linear(base.in_features, lora.a_weight.shape[0])
            up = torch.nn.Linear(lora.a_weight.shape[0], base.out_features)
            down.weight.data, down.bias.data = lora.a_weight.clone(), lora.a_bias.clone()
            up.weight.data, up.bias.data = lora.b_weight.clone(), lora.b_bias.clone()
            self.downs.append(down)
            self.ups.append(up)
        self.gates = [1.0 if index in (0, expert) else 0.0 for index in range(len(loras))]

    def forward(self, x):
        out = self.base(x)
        for down, up, gate in zip(self.downs, self.ups, self.gates):
            out = out + up(down(x)) * LORA_SCALE * gate
        return out


def unmerged(dit: WanModel, loras: dict[str, list[LoRA]], expert: int) -> WanModel:
    for name, branches in loras.items():
        parent_name, child = name.rsplit(".", 1)
        parent = dit.get_submodule(parent_name)
        setattr(parent, child, SevenBranchLinear(getattr(parent, child), branches, expert))
    return dit


def inputs(latent_frames: int) -> dict:
    generator = torch.Generator().manual_seed(2)
    shape = (1, 16, latent_frames, LATENT_HEIGHT, LATENT_WIDTH)
    return dict(latents=torch.randn(shape, generator=generator),
                y=torch.randn((1, 20, latent_frames, LATENT_HEIGHT, LATENT_WIDTH), generator=generator),
                context=torch.randn((1, 512, TEXT_DIM), generator=generator),
                clip_feature=torch.randn((1, 257, 1280), generator=generator),
                timestep=torch.tensor([900.0]))


def flops_at_14b(rank: int = RANK, dim: int = 5120, ffn: int = 13824, frames: int = 81) -> dict[str, float]:
    """Multiply-adds x 2 of one DiT block at Wan2.1-14B size, 480p: linears, attention, and the expert's branches."""
    tokens = ((frames - 1) // 4 + 1) * (480 // 16) * (832 // 16)  # 21 x 30 x 52 = 32760 at 81 frames
    context = 257 + 512  # CLIP image tokens + text tokens
    linears = 2 * tokens * (6 * dim * dim + 2 * dim * ffn)  # self q k v o, cross q o, ffn up and down
    linears += 2 * context * 4 * dim * dim  # cross k v, k_img v_img on the context (once per pass)
    attention = 4 * tokens * tokens * dim + 4 * tokens * context * dim  # QK^T and AV, self and cross
    branches = 2 * tokens * rank * (6 * 2 * dim + 2 * (dim + ffn))  # A then B on every video-token site
    branches += 2 * 512 * rank * 2 * 2 * dim  # cross k v on the text tokens
    return {"tokens": tokens, "linears": linears, "attention": attention, "branches": branches,
            "square": rank * 2 * dim / (dim * dim), "ffn": rank * (dim + ffn) / (dim * ffn)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-frames", type=int, default=2, help="latent frames (2 = a 5-frame run; 21 = 81 frames)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 keeps the ratios steady on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    base = build_dit()
    loras = random_loras(base)
    merged = build_dit()
    MixtureOfLoRA(merged, loras, base=None, device="cpu").activate(EXPERT)  # a first merge needs no re-read base
    seven = unmerged(build_dit(), loras, EXPERT)
    batch = inputs(args.latent_frames)
    tokens = args.latent_frames * (LATENT_HEIGHT // 2) * (LATENT_WIDTH // 2)
    universal = build_dit()
    mixture = MixtureOfLoRA(universal, loras, base=None, device="cpu")
    mixture.merge_universal()
    source = DiTSource(universal, mixture, "bench", "bench", 512, "cpu", torch.float32)
    expert = source.expert_tensors(EXPERT)
    ours, with_inputs = ExportableDiT(merged), ExportableDiT(universal)
    args_in_order = [batch[name] for name in ("latents", "timestep", "context", "clip_feature", "y")]
    folder = tempfile.TemporaryDirectory(prefix="bench_semfi_")
    started = time.monotonic()
    graph = onnx_graph(source, store.Store(Path(folder.name)))
    export_seconds = time.monotonic() - started
    session = OnnxDenoiser(graph, source, None, threads=args.threads)
    session.use_expert(EXPERT)

    def diffsynth_run(model):
        return lambda: model_fn_wan_video(dit=model, **batch)

    variants = {"base": diffsynth_run(base), "control": diffsynth_run(build_dit()), "merged": diffsynth_run(merged),
                "unmerged": diffsynth_run(seven), "ours": lambda: ours(*args_in_order),
                "inputs": lambda: with_inputs(*args_in_order, expert=expert), "onnx": lambda: session(*args_in_order)}

    with torch.no_grad():
        outputs = {name: run() for name, run in variants.items()}  # warm-up
        agreement = (outputs["merged"] - outputs["unmerged"]).abs().max().item()
        times = {name: [] for name in variants}
        names = list(variants)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.process_time()
                variants[name]()
                times[name].append(time.process_time() - started)

    best = {name: min(values) for name, values in times.items()}
    print(f"DiT dim {DIM}, {LAYERS} blocks, ffn {FFN}, LoRA rank {RANK} x {LORA_COUNT}; "
          f"latent {args.latent_frames}x{LATENT_HEIGHT}x{LATENT_WIDTH} ({tokens} tokens); "
          f"{torch.get_num_threads()} CPU threads; {args.rounds} rounds")
    for name, value in best.items():
        print(f"  {name:9s} {value * 1000:9.1f} ms per DiT step (best), {statistics.median(times[name]) * 1000:9.1f} ms (median)")
    print(f"  merged vs 7-branch outputs differ by at most {agreement:.2e}")
    noise = abs(best["control"] / best["base"] - 1)
    print(f"  noise: two identical copies of base differ by {noise:.1%}")
    merged_ratio, unmerged_ratio = best["merged"] / best["base"], best["unmerged"] / best["merged"]
    verdict = "met" if merged_ratio <= 1.01 else ("within the noise" if merged_ratio <= 1 + noise else "NOT met")
    print(f"merged/base     = {merged_ratio:.3f}  (target <= 1.01: {verdict})")
    print(f"unmerged/merged = {unmerged_ratio:.3f}  (target >= 1.5:  {'met' if unmerged_ratio >= 1.5 else 'NOT met'})")

    scale = outputs["merged"].abs().max().item()
    print(f"backends (ONNX export took {export_seconds:.0f}s): ours, inputs and onnx against merged (diffsynth) differ by at most "
          f"{max((outputs[n] - outputs['merged']).abs().max().item() for n in ('ours', 'inputs', 'onnx')) / scale:.1e} relative")
    print(f"ours/merged     = {best['ours'] / best['merged']:.3f}  (our exportable forward against diffsynth's)")
    print(f"onnx/merged     = {best['onnx'] / best['merged']:.3f}  (onnxruntime CPU against eager PyTorch, per DiT step)")
    measured = best["inputs"] / best["ours"]
    at_512 = flops_at_14b(dim=DIM, ffn=FFN)
    print(f"inputs/ours     = {measured:.3f}  (LoRA as inputs against merged; at dim {DIM} the two rank-{RANK} products "
          f"are {at_512['square']:.1%} of a {DIM}x{DIM} linear's FLOPs, {at_512['ffn']:.1%} of an ffn linear's)")
    big = flops_at_14b()
    total = big["linears"] + big["attention"]
    print(f"at 14B dims (dim 5120, ffn 13824, rank {RANK}), per block at 81 frames 480p ({big['tokens']} tokens): "
          f"the branches add {big['square']:.2%} to a 5120x5120 linear and {big['ffn']:.2%} to an ffn linear, "
          f"{big['branches'] / big['linears']:.2%} of all linear FLOPs and {big['branches'] / total:.2%} of the block's "
          f"(attention is {big['attention'] / total:.0%} of it): inputs/merged ~ {1 + big['branches'] / total:.3f} "
          f"from FLOPs, where dim {DIM} gives {1 + at_512['ffn']:.3f}-{1 + at_512['square']:.3f} per linear")
    folder.cleanup()


if __name__ == "__main__":
    main()
