"""``sfi eval``'s LPIPS, FID and CLIP scores, from local weight files only. No real weights exist here, so
the networks carry seeded random weights in the published file layouts; each score is checked against a
computation of its own in the test (LPIPS by plain convolutions, the Frechet distance by numpy), and a
wrong file is refused in one line before any engine runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffsynth")

from clips import decode_all  # noqa: E402

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
# AlexNet as LPIPS uses it: (torchvision layer index, stride, padding, max-pool before it).
ALEX = ((0, 4, 2, False), (3, 1, 2, True), (6, 1, 1, True), (8, 1, 1, False), (10, 1, 1, False))


@pytest.fixture(scope="module")
def lpips_state():
    from diffsynth.models.lpips import LPIPSModel

    torch.manual_seed(7)
    model = LPIPSModel("alex")
    for parameter in model.parameters():
        parameter.data.copy_(torch.rand_like(parameter) * 0.1 if parameter.dim() == 4 and parameter.shape[2:] == (1, 1)
                             else torch.randn_like(parameter) * 0.05)
    return {key: value.clone() for key, value in model.state_dict().items()}


def own_lpips(state: dict, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS written out: scaled inputs, AlexNet's five ReLU outputs, unit-normalised over channels, squared
    difference weighted by the linear layer, averaged over the picture, summed over layers."""
    import torch.nn.functional as F

    def features(frame):
        x = torch.from_numpy(frame.astype(np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1
        x = (x - SHIFT) / SCALE
        out = []
        for slice_number, (layer, stride, padding, pool) in enumerate(ALEX, start=1):
            if pool:
                x = F.max_pool2d(x, 3, 2)
            weight, bias = state[f"net.slice{slice_number}.{layer}.weight"], state[f"net.slice{slice_number}.{layer}.bias"]
            x = F.relu(F.conv2d(x, weight, bias, stride=stride, padding=padding))
            out.append(x)
        return out

    total = 0.0
    for index, (fa, fb) in enumerate(zip(features(a), features(b))):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total += float(F.conv2d((na - nb) ** 2, state[f"lin{index}.model.1.weight"]).mean())
    return total


def crossfade_truth(pan_clip, ffmpeg_exe, starts):
    frames = decode_all(pan_clip, ffmpeg_exe)
    made = [np.rint((frames[s].astype(np.float64) + frames[s + 2]) / 2).astype(np.uint8) for s in starts]
    return frames, made, [frames[s + 1] for s in starts]


def test_lpips_from_a_whole_model_file_and_from_lpips_and_torchvision_files(sfi, tmp_path, pan_clip, ffmpeg_exe,
                                                                            lpips_state):
    from safetensors.torch import save_file

    whole = tmp_path / "alexnet.safetensors"
    save_file(lpips_state, str(whole))
    lin = tmp_path / "alex.pth"  # the lpips package's file: the linear layers only
    torch.save({k: v for k, v in lpips_state.items() if k.startswith("lin")}, lin)
    backbone = tmp_path / "alexnet-owt.pth"  # torchvision's layout, classifier included
    tv = {f"features.{k.split('.', 3)[2]}.{k.split('.', 3)[3]}": v for k, v in lpips_state.items() if k.startswith("net.")}
    torch.save({**tv, "classifier.1.weight": torch.zeros(4096, 9216)}, backbone)
    results = []
    for flags in (("--lpips", whole), ("--lpips", lin, "--lpips-backbone", backbone)):
        result = sfi("eval", pan_clip, "--held-out", 1, "--gaps", 2, "--engines", "crossfade", "--json", *flags)
        assert result.code == 0, result.stderr
        results.append(json.loads(result.stdout))
    summary = results[0]
    frames, made, truth = crossfade_truth(pan_clip, ffmpeg_exe, summary["gap_starts"])
    scores = summary["engines"]["crossfade"]
    assert scores["lpips"] == pytest.approx(np.mean([own_lpips(lpips_state, m, t) for m, t in zip(made, truth)]), rel=1e-3)
    starts = summary["gap_starts"]
    ends = [np.mean([own_lpips(lpips_state, m, frames[s + d]) for m, s in zip(made, starts)]) for d in (0, 2)]
    assert scores["end_lpips"] == pytest.approx(ends, rel=1e-3)
    assert scores["lpips"] > 0 and results[1]["engines"]["crossfade"]["lpips"] == pytest.approx(scores["lpips"], rel=1e-6)


def test_wrong_weight_files_are_refused_in_one_line_before_any_engine_runs(sfi, tmp_path, pan_clip, lpips_state):
    from safetensors.torch import save_file

    short = tmp_path / "short.safetensors"
    save_file({k: v for k, v in lpips_state.items() if not k.startswith("lin4")}, str(short))
    truncated = tmp_path / "truncated.pth"
    torch.save(lpips_state, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    lin_only = tmp_path / "alex.pth"
    torch.save({k: v for k, v in lpips_state.items() if k.startswith("lin")}, lin_only)
    not_fid = tmp_path / "inception.pth"
    torch.save({"fc.weight": torch.zeros(10, 20)}, not_fid)
    for flags, words in [
        (("--lpips", short), "not LPIPS (alex/vgg/squeeze) weights: 1 of 15 tensors missing: lin4.model.1.weight"),
        (("--lpips", truncated), "cannot read LPIPS weights"),
        (("--lpips", lin_only), "holds LPIPS's linear layers only; point eval.lpips_backbone"),
        (("--lpips", tmp_path / "none.pth"), "does not exist"),
        (("--lpips", tmp_path), f"LPIPS weights '{tmp_path}' is a folder, not a weights file"),
        (("--lpips-backbone", lin_only), "--lpips-backbone is the backbone of the --lpips file; give --lpips too"),
        (("--fid-weights", not_fid), "is not the FID Inception"),
        (("--clip-model", tmp_path), "is not a CLIP model folder (no config.json)"),
    ]:
        result = sfi("eval", pan_clip, "--engines", "crossfade", *flags)
        lines = result.stderr.strip().splitlines()
        assert result.code != 0 and words in lines[-1] and "gap 1" not in result.stderr, (flags, result.stderr)
        assert not any(line.startswith("Traceback") for line in lines)


def test_a_report_over_a_weight_file_is_refused_like_any_input(sfi, tmp_path, pan_clip, lpips_state):
    from safetensors.torch import save_file

    weights = tmp_path / "alex.safetensors"
    save_file(lpips_state, str(weights))
    before = weights.read_bytes()
    result = sfi("eval", pan_clip, "--engines", "crossfade", "--lpips", weights, "--report", weights, "--force")
    assert result.code == 1 and "is also an input" in result.stderr and "gap 1" not in result.stderr, result.stderr
    assert weights.read_bytes() == before


def test_frechet_distance_matches_numpy():
    from sfi_cli.evaluate.learned import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    b = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.3
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((Ca Cb)^1/2) is the sum of the square roots of Ca Cb's eigenvalues (real, non-negative).
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-4)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-4)


def test_fid_and_clip_scores_come_from_the_local_files(sfi, tmp_path, pan_clip, ffmpeg_exe):
    from diffsynth.models.fid import FIDInceptionModel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(3)
    inception = FIDInceptionModel().model
    inception.fc = torch.nn.Linear(2048, 1008)  # the published file holds its classifier too
    fid_file = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save(inception.state_dict(), fid_file)
    clip_folder = tmp_path / "clip"
    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         vocab_size=100),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(config).save_pretrained(clip_folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip_folder)
    result = sfi("eval", pan_clip, "--held-out", 1, "--gaps", 2, "--engines", "crossfade", "--json",
                 "--fid-weights", fid_file, "--clip-model", clip_folder)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    frames, made, truth = crossfade_truth(pan_clip, ffmpeg_exe, summary["gap_starts"])
    crossfade = summary["engines"]["crossfade"]

    from sfi_cli.evaluate.learned import frechet_distance

    network = FIDInceptionModel().eval()
    network.model.load_state_dict({k: v for k, v in inception.state_dict().items() if not k.startswith("fc.")})

    def pooled(images):
        x = torch.from_numpy(np.stack(images).astype(np.float32) / 255).permute(0, 3, 1, 2)
        with torch.no_grad():
            return network(torch.nn.functional.interpolate(x, size=(299, 299), mode="bicubic").clamp(0, 1)).double()

    assert crossfade["fid"] == pytest.approx(frechet_distance(pooled(made).numpy(), pooled(truth).numpy()), rel=1e-3)
    model = CLIPModel.from_pretrained(clip_folder).eval()
    processor = CLIPImageProcessor.from_pretrained(clip_folder)

    def embed(images):
        with torch.no_grad():
            out = model.get_image_features(**processor(images=images, return_tensors="pt"))
        out = getattr(out, "pooler_output", out)
        return out / out.norm(dim=-1, keepdim=True)

    assert crossfade["clip_truth"] == pytest.approx(float((embed(made) * embed(truth)).sum(-1).mean()), abs=1e-4)
    starts = summary["gap_starts"]
    nearer = [max(float(embed([m])[0] @ embed([frames[s]])[0]), float(embed([m])[0] @ embed([frames[s + 2]])[0]))
              for m, s in zip(made, starts)]
    assert crossfade["clip_ends"] == pytest.approx(np.mean(nearer), abs=1e-4)
    assert all(-1 <= e["clip_truth"] <= 1 and e["fid"] >= 0 for e in summary["engines"].values())
