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
            multiplies the 5 unused ones by 0.0, as the official code does.

Usage: .venv/bin/python benchmarks/bench_semfi.py [--latent-frames 2] [--rounds 9] [--threads 1]
Targets: merged/base <= 1.01, unmerged/merged >= 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from diffsynth.models.wan_video_dit import WanModel  # noqa: E402
from diffsynth.pipelines.wan_video import model_fn_wan_video  # noqa: E402

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
    variants = {"base": base, "control": build_dit(), "merged": merged, "unmerged": seven}

    with torch.no_grad():
        outputs = {name: model_fn_wan_video(dit=model, **batch) for name, model in variants.items()}  # warm-up
        agreement = (outputs["merged"] - outputs["unmerged"]).abs().max().item()
        times = {name: [] for name in variants}
        names = list(variants)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.process_time()
                model_fn_wan_video(dit=variants[name], **batch)
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


if __name__ == "__main__":
    main()
