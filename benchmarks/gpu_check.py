"""GPU check for SemFi: the tiny model on CUDA against the CPU, each backend against eager, and Wan2.1-14B's real
block dimensions timed per backend and attention kernel; one table at the end.

1. Tiny model (the test suite's own, tests/tiny_wan.py): per case (frame count, so expert), PSNR of the frames
   made on the device in bfloat16 against the CPU's float32 frames, and for each backend on the device the max
   abs difference of its first DiT output from eager's and the PSNR of its frames to eager's.
2. Random weights at Wan2.1-I2V-14B's dimensions (dim 5120, 40 heads, ffn 13824, 257 + 512 context tokens) for
   a few of the 40 blocks, at 480p (60x104 latents) for 33 and 81 frames, per backend and attention kernel:
   ms per block, then seconds per step (40 blocks, x2 passes with CFG) and per gap (50 steps with CFG; 4
   steps without, a distillation LoRA's schedule), peak memory, and the time over the FLOP floor at the bf16
   matmul rate measured on this device.
3. One table (also written to --out as Markdown).

Runs on a bare GPU machine: Python with torch (CUDA), Triton, onnx, onnxruntime, numpy, Pillow, safetensors and
transformers, no registry. The other packages come as wheels from --wheels DIR (`bash scripts/gpu_wheels.sh DIR`
makes it), unpacked into a temporary folder put first on sys.path; when torchvision is absent, a stand-in with
the one transform the model path uses (Normalize) is written there, and the table says so. A backend or kernel
that cannot run gives a "not available: <why>" row; TensorRT rows say "not measurable here" without tensorrt.

  python benchmarks/gpu_check.py --wheels DIR [--out gpu_check.md]   # the GPU check: under 8 minutes
  python benchmarks/gpu_check.py --device cpu --quick                # the same code paths on a CPU, small dims
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL = dict(dim=5120, heads=40, ffn=13824, layers=40, latent=(60, 104))  # Wan2.1-I2V-14B, 480p latents
QUICK = dict(dim=256, heads=2, ffn=512, layers=40, latent=(12, 16))  # head size 128 as in Wan (its RoPE split needs it)  # the same code paths, small enough for a CPU
FRAME_COUNTS = (33, 81)
IMAGE_TOKENS, TEXT_TOKENS = 257, 512
TINY_CASES = (3, 7, 30)  # new frames: 5, 9, 33 model frames (experts 1, 2, 4)
TINY_SIZE = (32, 48)
COLUMNS = ("part", "backend", "attention", "case", "ms/block", "s/step cfg", "s/gap 50 cfg", "s/gap 4 no-cfg",
           "peak GiB", "x floor", "PSNR vs CPU fp32", "DiT max|diff| vs eager", "PSNR vs eager", "note")


# -- a bare machine ----------------------------------------------------------------------------------------------

def unpack_wheels(folder: Path, target: Path) -> tuple[list[str], list[str]]:
    """Unpack each wheel in ``folder`` whose distribution is not installed here into ``target`` (what pip does,
    less scripts), which goes first on sys.path; returns (unpacked, already installed) names."""
    import importlib.metadata

    unpacked, present = [], []
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        raise SystemExit(f"gpu_check: no wheels in '{folder}'; make them with 'bash scripts/gpu_wheels.sh {folder}'")
    for wheel in wheels:
        name = wheel.name.split("-")[0]
        try:
            importlib.metadata.distribution(name)
            present.append(name)
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        unpacked.append(name)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return unpacked, present


TORCHVISION_STANDIN = '''"""Stand-in written by benchmarks/gpu_check.py: torchvision is absent here. diffsynth imports it at start-up and
its Wan CLIP encoder normalises with transforms.Normalize; nothing else of it runs on SemFi's path."""
'''
TRANSFORMS_STANDIN = '''import enum


class InterpolationMode(enum.Enum):
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, tensor):
        import torch

        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms


class _Unused:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        raise NotImplementedError("the torchvision stand-in has no " + type(self).__name__)


class Resize(_Unused):
    pass


class ToTensor(_Unused):
    pass
'''


def torchvision_standin(target: Path) -> bool:
    """Write the stand-in when torchvision cannot be imported; True when it did. transformers is asked first, so
    that it records torchvision as absent (its answer is cached) and never reaches for the stand-in."""
    if importlib.util.find_spec("torchvision") is not None:
        return False
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()
    package = target / "torchvision"
    (package / "transforms").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(TORCHVISION_STANDIN + "from torchvision import transforms\n")
    (package / "transforms" / "__init__.py").write_text(TRANSFORMS_STANDIN + "from torchvision.transforms import functional\n")
    (package / "transforms" / "functional.py").write_text('"""Unused on SemFi\'s path."""\n')
    importlib.invalidate_caches()
    return True


# -- measuring ---------------------------------------------------------------------------------------------------

class Clock:
    """The run's time budget: a step that would not fit is skipped, with a row saying so."""

    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self) -> float:
        return self.end - time.monotonic()


def psnr(a, b) -> float:
    import numpy as np

    error = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return math.inf if error == 0 else 10 * math.log10(255.0 ** 2 / error)


def frames_psnr(frames, reference) -> float:
    import numpy as np

    return psnr(np.stack(frames), np.stack(reference))


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def token_grid(dims: dict, frames: int) -> tuple[int, int, int, int]:
    """(latent frames, token rows, token columns, tokens) of a 480p-shaped pass of ``frames`` frames (patch 1x2x2)."""
    f, h, w = (frames - 1) // 4 + 1, dims["latent"][0] // 2, dims["latent"][1] // 2
    return f, h, w, f * h * w


def matmul_rate(device: str, dtype, dims: dict) -> float:
    """Best bf16 matmul FLOP/s on the shape of the block's largest one (81 frames' tokens through the MLP)."""
    import torch

    tokens = token_grid(dims, FRAME_COUNTS[-1])[3]
    a = torch.randn(tokens, dims["dim"], device=device, dtype=dtype)
    b = torch.randn(dims["dim"], dims["ffn"], device=device, dtype=dtype)
    best = math.inf
    for _ in range(5):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(3):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - started) / 3)
    return 2 * tokens * dims["dim"] * dims["ffn"] / best


def block_flops(tokens: int, dim: int, ffn: int) -> float:
    """Matmul FLOPs of one Wan block pass: self-attention (projections, scores, values), cross-attention to the text
    and image tokens, the MLP."""
    context = IMAGE_TOKENS + TEXT_TOKENS
    projections = 2 * tokens * dim * dim * (4 + 2) + 2 * context * dim * dim * 4  # q k v o, cross q o; k v, k_img v_img
    attention = 4 * tokens * tokens * dim + 4 * tokens * context * dim
    return projections + attention + 4 * tokens * dim * ffn


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


# -- part 1: the tiny model --------------------------------------------------------------------------------------

def backend_note(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot be tried here, or None."""
    from engines.semfi import DEFAULTS

    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "not measurable here: the tensorrt package is absent"
    if backend != "eager" and "backend" not in DEFAULTS:
        return "not available: this sfi has no backend setting yet (engines.semfi)"
    if backend != "eager":
        from engines.semfi_parts.backends import backend_problem

        problem = backend_problem(backend, "sdpa", device, "bfloat16")
        if problem:
            return f"not available: {problem}"
    return None


def tiny_part(device: str, quick: bool, workdir: Path, clock: Clock, rows: list[dict]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_wan import gradient_pair, write_tiny_wan

    from engines.errors import EngineError
    from engines.semfi import SemFiEngine

    wan = write_tiny_wan(workdir / "tiny")
    first, last = gradient_pair(48, 32)
    cases = TINY_CASES[:1] if quick else TINY_CASES
    common = dict(model_dir=str(wan.model_dir), lora=str(wan.lora), steps=2 if quick else 4, cfg=5.0,
                  area=TINY_SIZE[0] * TINY_SIZE[1])

    def run(engine, count):
        outputs = []

        def first_pass(step, branch, output):
            if step == 0 and branch == "positive":
                outputs.append(output.detach().float().cpu())

        frames = engine.generate_raw(first, last, count, TINY_SIZE, seed=1, observe=first_pass)
        return frames, outputs[0]

    cpu = SemFiEngine(**common, device="cpu", dtype="float32")
    reference = {count: run(cpu, count)[0] for count in cases}
    eager: dict[int, tuple] = {}
    backends = ("eager", "compile", "tensorrt")
    for backend in backends:
        note = "skipped in --quick: compiling takes minutes on a CPU" if quick and backend == "compile" else \
            backend_note(backend, device)
        if note is None and clock.left() < 60:
            note = "skipped: time budget"
        if note:
            rows.append(dict(part="tiny", backend=backend, attention="sdpa", case="all", note=note))
            continue
        settings = {} if backend == "eager" else dict(backend=backend, cache_dir=str(workdir / "engines"))
        try:
            engine = SemFiEngine(**common, device=device, dtype="bfloat16", **settings)
            if backend == "tensorrt":
                engine.compile([TINY_SIZE], list(cases))
            for count in cases:
                started = time.monotonic()
                frames, output = run(engine, count)
                row = dict(part="tiny", backend=backend, attention="sdpa",
                           case=f"{engine.model_frames(count)} frames", **{"PSNR vs CPU fp32": frames_psnr(frames, reference[count])})
                if backend == "eager":
                    eager[count] = (frames, output)
                else:
                    row["DiT max|diff| vs eager"] = float((output - eager[count][1]).abs().max())
                    row["PSNR vs eager"] = frames_psnr(frames, eager[count][0])
                row["note"] = f"{time.monotonic() - started:.1f}s"
                rows.append(row)
        except (EngineError, RuntimeError, ImportError) as error:
            rows.append(dict(part="tiny", backend=backend, attention="sdpa", case="all",
                             note=f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"))


# -- part 2: 14B blocks ------------------------------------------------------------------------------------------

def block_inputs(dims: dict, frames: int, device: str, dtype):
    """x, context, t_mod and the RoPE table (complex, diffsynth's layout) of one 480p-shaped pass."""
    import torch
    from diffsynth.models.wan_video_dit import precompute_freqs_cis_3d

    f, h, w, _ = token_grid(dims, frames)
    dim, head_dim = dims["dim"], dims["dim"] // dims["heads"]
    generator = torch.Generator(device="cpu").manual_seed(0)

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    tables = precompute_freqs_cis_3d(head_dim)
    freqs = torch.cat([tables[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                       tables[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
                       tables[2][:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(f * h * w, 1, -1).to(device)
    return random(1, f * h * w, dim), random(1, IMAGE_TOKENS + TEXT_TOKENS, dim), random(1, 6, dim) * 0.1, freqs


def make_blocks(dims: dict, count: int, device: str, dtype):
    import torch
    from diffsynth.models.wan_video_dit import DiTBlock

    torch.manual_seed(0)
    blocks = []
    for _ in range(count):
        block = DiTBlock(True, dims["dim"], dims["heads"], dims["ffn"], 1e-6)
        for parameter in block.parameters():  # weights of the real model's scale (speed does not depend on them)
            parameter.data.normal_(0, parameter.shape[-1] ** -0.5 if parameter.dim() > 1 else 0.02)
        blocks.append(block.to(device=device, dtype=dtype).eval().requires_grad_(False))
    return blocks


def diffsynth_attention(kernel: str) -> None:
    """Point diffsynth's block attention at ``kernel`` (its module flags pick the kernel at each call)."""
    import diffsynth.models.wan_video_dit as wan

    wan.FLASH_ATTN_2_AVAILABLE = False
    wan.FLASH_ATTN_3_AVAILABLE = kernel == "flash3"
    wan.SAGE_ATTN_AVAILABLE = kernel == "sage"
    if kernel == "flash3":
        wan.flash_attn_interface = importlib.import_module("flash_attn_interface")
    if kernel == "sage":
        wan.sageattn = importlib.import_module("sageattention").sageattn


def exportable_block():
    """The export branch's block (real-valued RoPE, the forward compile and TensorRT run), or None."""
    try:
        from engines.semfi_parts.backends.dit import WanBlock
    except ImportError:
        return None
    return WanBlock


def runner_for(backend: str, kernel: str, blocks, inputs, workdir: Path, device: str):
    """A function running the blocks once in a row, or a string saying why there is none."""
    import torch

    x, context, t_mod, freqs = inputs
    wan_block = exportable_block()
    if backend == "eager":
        diffsynth_attention(kernel)
        return lambda: _chain(lambda block, h: block(h, context, t_mod, freqs), blocks, x)
    cos, sin = freqs.real.float().contiguous(), freqs.imag.float().contiguous()
    if backend == "compile":
        if wan_block is not None:
            modules = [torch.compile(wan_block(block, kernel), dynamic=False) for block in blocks]
            return lambda: _chain(lambda module, h: module(h, context, t_mod, cos, sin), modules, x)
        diffsynth_attention(kernel)
        modules = [torch.compile(block, dynamic=False) for block in blocks]
        return lambda: _chain(lambda module, h: module(h, context, t_mod, freqs), modules, x)
    if backend == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "not measurable here: the tensorrt package is absent"
        if wan_block is None:
            return "not available: TensorRT needs the export branch's exportable block (engines.semfi_parts.backends.dit)"
        engines = [TensorRTBlock(wan_block(block, "sdpa"), (x, context, t_mod, cos, sin), workdir / f"trt{i}_{x.shape[1]}")
                   for i, block in enumerate(blocks)]
        return lambda: _chain(lambda engine, h: engine(h, context, t_mod, cos, sin), engines, x)
    return f"not available: unknown backend {backend}"


def _chain(call, modules, x):
    for module in modules:
        x = call(module, x)
    return x


class TensorRTBlock:
    """One block exported to ONNX (static shapes) and built as a strongly typed TensorRT engine, run on torch tensors."""

    NAMES = ("x", "context", "t_mod", "cos", "sin")

    def __init__(self, module, inputs, folder: Path) -> None:
        import tensorrt as trt
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "block.onnx"
        torch.onnx.export(module, inputs, str(path), input_names=list(self.NAMES), output_names=["out"], dynamo=True,
                          external_data=True)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            raise RuntimeError("TensorRT cannot parse the block: " + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 8 << 30)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("TensorRT could not build the block engine")
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        self.out = torch.empty_like(inputs[0])

    def __call__(self, *tensors):
        import torch

        for name, tensor in zip(self.NAMES, tensors):
            self.context.set_tensor_address(name, tensor.contiguous().data_ptr())
        self.context.set_tensor_address("out", self.out.data_ptr())
        self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return self.out


def time_runner(run, device: str, repeats: int) -> tuple[float, float | None]:
    """(median seconds of one run of the blocks, peak GiB allocated while running), after a warm-up run."""
    import torch

    with torch.no_grad():
        run()
        synchronize(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            synchronize(device)
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.startswith("cuda") else None
    return statistics.median(times), peak


def kernel_note(kernel: str, device: str) -> str | None:
    modules = {"flash3": "flash_attn_interface", "sage": "sageattention"}
    if kernel == "sdpa":
        return None
    if importlib.util.find_spec(modules[kernel]) is None:
        return f"not available: {modules[kernel]} is not installed"
    if not device.startswith("cuda"):
        return f"not available: {kernel} is a CUDA kernel"
    return None


def blocks_part(device: str, quick: bool, block_count: int, workdir: Path, clock: Clock,
                rows: list[dict]) -> tuple[float, str, float]:
    """Rows for each backend, kernel and frame count; returns the measured matmul rate, its dtype and the GiB of
    the timed blocks' weights."""
    import torch

    dims = QUICK if quick else FULL
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32  # a CPU has no fast bf16 matmul
    rate = matmul_rate(device, dtype, dims)
    blocks = make_blocks(dims, block_count, device, dtype)
    weights = sum(p.numel() * p.element_size() for block in blocks for p in block.parameters()) / 2 ** 30
    label = ("quick dims" if quick else "14B dims") + ("" if dtype == torch.bfloat16 else " fp32")
    plan = [("eager", "sdpa"), ("compile", "sdpa"), ("eager", "flash3"), ("eager", "sage"), ("compile", "flash3"),
            ("compile", "sage"), ("tensorrt", "sdpa")]
    for backend, kernel in plan:
        note = "skipped in --quick: compiling takes minutes on a CPU" if quick and backend == "compile" else \
            kernel_note(kernel, device)
        needed = {"eager": 20, "compile": 150, "tensorrt": 240}[backend] * (0.1 if quick else 1)
        for frames in FRAME_COUNTS:
            row = dict(part=label, backend=backend, attention=kernel, case=f"{frames} frames")
            if note is None and clock.left() < needed:
                note = "skipped: time budget"
            if note:
                rows.append({**row, "note": note})
                continue
            inputs = block_inputs(dims, frames, device, dtype)
            try:
                run = runner_for(backend, kernel, blocks, inputs, workdir, device)
                if isinstance(run, str):
                    note = run
                    rows.append({**row, "note": note})
                    continue
                started = time.monotonic()
                seconds, peak = time_runner(run, device, 2 if quick else 5)
            except Exception as error:  # a kernel or compiler failing is a result to report, not a crash
                rows.append({**row, "note": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"})
                continue
            per_block = seconds / block_count
            tokens = inputs[0].shape[1]
            step = per_block * dims["layers"] * 2
            rows.append({**row, "ms/block": per_block * 1000, "s/step cfg": step, "s/gap 50 cfg": 50 * step,
                         "s/gap 4 no-cfg": 4 * step / 2, "peak GiB": peak,
                         "x floor": per_block / (block_flops(tokens, dims["dim"], dims["ffn"]) / rate),
                         "note": f"{tokens} tokens, {time.monotonic() - started:.0f}s"})
            del inputs
    return rate, str(dtype).removeprefix("torch."), weights


# -- the table ---------------------------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(column)) for column in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, help="folder of wheels to unpack first (scripts/gpu_wheels.sh makes it)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --quick")
    parser.add_argument("--quick", action="store_true", help="small dims and fewer cases: the code paths, not the numbers")
    parser.add_argument("--blocks", type=int, default=2, help="blocks timed in a row (of 40; default 2)")
    parser.add_argument("--budget", type=float, default=450, help="seconds the whole check may take (default 450)")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    clock = Clock(args.budget)

    with tempfile.TemporaryDirectory(prefix="sfi-gpu-check-") as temporary:
        workdir = Path(temporary)
        site = workdir / "site"
        site.mkdir()
        wheels, present = unpack_wheels(args.wheels, site) if args.wheels else ([], [])
        standin = torchvision_standin(site)
        sys.path.insert(0, str(ROOT))
        import torch

        if args.quick and args.device == "cpu":
            torch.set_num_threads(1)  # tiny tensors gain nothing from threads, and a shared CPU slows them down

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print(f"gpu_check: no CUDA device here (torch {torch.__version__}); run it with --device cpu --quick", file=sys.stderr)
            return 1
        rows: list[dict] = []
        tiny_part(args.device, args.quick, workdir, clock, rows)
        rate, matmul_dtype, weights = blocks_part(args.device, args.quick, args.blocks, workdir, clock, rows)

    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    trt = importlib.util.find_spec("tensorrt")
    header = [f"device: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
              f"tensorrt {'present' if trt else 'absent'}; measured {matmul_dtype} matmul {rate / 1e12:.3g} TFLOP/s",
              f"wheels unpacked: {', '.join(wheels) or 'none'}" + (f" (installed here already: {', '.join(present)})" if present else "")
              + ("; torchvision absent: a stand-in with its Normalize was used" if standin else ""),
              f"s/step: 40 blocks x 2 passes (CFG) at the measured ms/block; s/gap: 50 steps with CFG, 4 without; "
              f"x floor: ms/block over the block's matmul FLOPs at the measured rate; peak GiB: all memory allocated while "
              f"{args.blocks} blocks run, their {weights:.2f} GiB of weights included; whole check {args.budget - clock.left():.0f}s"]
    text = "\n".join(header) + "\n\n" + table(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
