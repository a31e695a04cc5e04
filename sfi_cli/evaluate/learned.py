"""Scores that need a learnt network: LPIPS, FID and CLIP, each only from weight files the user points at.

sfi ships none of these weights and never downloads them. The networks are diffsynth's (LPIPS and the
FID Inception) and transformers' (CLIP); the files are read here, with ``weights_only`` or safetensors,
and every tensor a network needs is checked by name and shape before it is used, so a wrong file is
refused with a one-line summary instead of giving numbers that mean nothing.

- LPIPS (``eval.lpips``): a whole LPIPS model in one file (diffsynth's ``LPIPS/alexnet.safetensors``,
  ``vgg.safetensors`` or ``squeezenet.safetensors``), or the ``lpips`` package's linear layers
  (``weights/v0.1/alex.pth`` ...) with torchvision's backbone file beside them in ``eval.lpips_backbone``
  (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``, ``squeezenet1_1-b8a52dc0.pth``). Scored at
  the frames' own size, inputs in [-1, 1].
- FID (``eval.fid``): pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID Inception);
  2048 pooled features of each frame at 299x299. Over a handful of frames the covariances are far from
  full rank: the value compares engines on the same frames, not with published FIDs.
- CLIP (``eval.clip``): a folder saved by transformers (``config.json``, weights, the image
  processor's ``preprocessor_config.json``), e.g. openai/clip-vit-large-patch14: cosine similarity of
  image embeddings, made frame to real frame (``clip_truth``) and to the nearer given end (``clip_ends``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfi_cli.errors import SfiError

INSTALL = "run 'bash scripts/install.sh semfi' (torch, torchvision, diffsynth, transformers)"
FID_SIZE = 299
# torchvision's backbone keys are ``features.N...``; LPIPS keeps each layer's index N inside its slices.
BACKBONE_PREFIX = "features."


@dataclass(frozen=True)
class LearnedWeights:
    """The files the user pointed at (None: that score is not made)."""

    lpips: Path | None = None
    lpips_backbone: Path | None = None
    fid: Path | None = None
    clip: Path | None = None

    def any(self) -> bool:
        return any((self.lpips, self.fid, self.clip))

    def files(self) -> list[Path]:
        """Every file these scores read (the CLIP folder's too)."""
        clip = sorted(f for f in self.clip.rglob("*") if f.is_file()) if self.clip and self.clip.is_dir() else []
        return [*(path for path in (self.lpips, self.lpips_backbone, self.fid) if path), *clip]


def _summary(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def read_tensors(path: Path, what: str) -> dict:
    """A file's tensors by name, read as the SemFi LoRA is (safetensors, or torch with ``weights_only``;
    unwrapped from ``state_dict``/``model`` and a ``module.`` prefix)."""
    import torch

    from engines.semfi_parts.mol import read_tensors as read_plain_tensors

    state = read_plain_tensors(path, f"{what} weights", "point the setting at the file the README's eval table names")
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SfiError(f"{what} weights '{path}' are not a dictionary of tensors")
    return state


def load_checked(network, state: dict, what: str, paths: str, ignored: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``network`` after checking every tensor by name and shape. Names starting with one
    of ``ignored`` are left alone on both sides: in the file (a classifier the score does not use) and in the
    network (constants it defines itself)."""
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items() if not key.startswith(ignored)}
    used = {key: value for key, value in state.items() if not key.startswith(ignored)}
    missing = sorted(set(expected) - set(used))
    unknown = sorted(set(used) - set(expected))
    wrong = sorted(f"{key} {tuple(used[key].shape)} (expected {expected[key]})"
                   for key in set(expected) & set(used) if tuple(used[key].shape) != expected[key])
    problems = [f"{len(names)} {kind}: {_summary(names)}" for names, kind in
                ((missing, f"of {len(expected)} tensors missing"), (wrong, "with another shape"), (unknown, "unknown"))
                if names]
    if problems:
        raise SfiError(f"{paths} {'is' if ' and ' not in paths else 'are'} not {what} weights: {'; '.join(problems)}")
    network.load_state_dict({key: used[key].float() for key in expected}, strict=False)


def lpips_network(weights: Path, backbone: Path | None):
    """diffsynth's LPIPS model for whichever backbone (alex, vgg, squeeze) the files hold, checked and loaded."""
    from diffsynth.models.lpips import LPIPS_NET_CHOICES, LPIPSModel

    state = read_tensors(weights, "LPIPS")
    paths = f"'{weights}'"
    if backbone is not None:
        paths += f" and '{backbone}'"
        state = {key: value for key, value in state.items() if key.startswith("lin")}
        state.update(backbone_keys(read_tensors(backbone, "LPIPS backbone")))
    elif not any(key.startswith("net.") for key in state):
        raise SfiError(f"'{weights}' holds LPIPS's linear layers only; point eval.lpips_backbone at torchvision's "
                       f"backbone file (alexnet-owt-7be5be79.pth for alex.pth, vgg16-397923af.pth for vgg.pth)")
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    candidates = {net: LPIPSModel(net) for net in LPIPS_NET_CHOICES}
    net = next((net for net, model in candidates.items()
                if all(shapes.get(k) == tuple(v.shape) for k, v in model.state_dict().items()
                       if not k.startswith("scaling_layer."))), "alex")
    network = candidates[net]
    load_checked(network, state, f"LPIPS ({'/'.join(LPIPS_NET_CHOICES)})", paths,
                 ignored=("classifier.", "scaling_layer."))
    return network.eval()


def backbone_keys(state: dict) -> dict:
    """torchvision's ``features.N.*`` keys as LPIPS names them (``net.sliceK.N.*``): LPIPS keeps each layer's
    index N and puts it in a slice; the backbone is the one whose layers with weights are exactly the file's."""
    from diffsynth.models.lpips import LPIPS_NET_CHOICES, LPIPSModel

    numbered = {key: int(key.split(".")[1]) for key in state
                if key.startswith(BACKBONE_PREFIX) and key.count(".") >= 2 and key.split(".")[1].isdigit()}
    layers = set(numbered.values())
    for net in LPIPS_NET_CHOICES:
        slices = {int(index): int(name.removeprefix("slice"))
                  for name, index in (key.split(".")[:2] for key in LPIPSModel(net).net.state_dict())}
        if set(slices) == layers:
            return {f"net.slice{slices[layer]}.{key[len(BACKBONE_PREFIX):]}": state[key] for key, layer in numbered.items()}
    return state  # not a torchvision backbone: load_checked says what is missing


def fid_network(weights: Path):
    """The TF FID Inception (diffsynth's), checked and loaded; its 1008-way classifier is left out."""
    from diffsynth.models.fid import FIDInceptionModel

    network = FIDInceptionModel()
    state = read_tensors(weights, "FID Inception")
    classifier = state.get("fc.weight")
    if classifier is None or tuple(classifier.shape) != (1008, 2048):
        raise SfiError(f"'{weights}' is not the FID Inception (pt_inception-2015-12-05): no 1008x2048 fc.weight")
    load_checked(network.model, state, "FID Inception (pt_inception-2015-12-05)", f"'{weights}'", ignored=("fc.",))
    return network.eval()


def clip_network(folder: Path):
    """transformers' CLIP model and image processor from a local folder (never fetched)."""
    if not (folder / "config.json").is_file():
        raise SfiError(f"'{folder}' is not a CLIP model folder (no config.json); save one there with "
                       f"transformers' save_pretrained, e.g. openai/clip-vit-large-patch14")
    from transformers import CLIPImageProcessor, CLIPModel

    try:
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise SfiError(f"cannot load the CLIP model in '{folder}' ({reason})") from None
    return model.eval(), processor


class LearnedScorer:
    """Loads the networks once (``check`` refuses bad files before any engine runs) and scores runs."""

    def __init__(self, weights: LearnedWeights) -> None:
        import importlib.util

        missing = [name for name in ("torch", "torchvision", "diffsynth", "transformers")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise SfiError(f"LPIPS, FID and CLIP scores need {', '.join(missing)}; {INSTALL}")
        import torch

        self.torch = torch
        self.lpips = lpips_network(weights.lpips, weights.lpips_backbone) if weights.lpips else None
        self.fid = fid_network(weights.fid) if weights.fid else None
        self.clip = clip_network(weights.clip) if weights.clip else None

    def _tensor(self, frames: list[np.ndarray]):
        planes = np.stack([frame.astype(np.float32) / 255.0 for frame in frames]).transpose(0, 3, 1, 2)
        return self.torch.from_numpy(np.ascontiguousarray(planes))

    def lpips_values(self, made: list[np.ndarray], real: list[np.ndarray]) -> list[float]:
        with self.torch.inference_mode():
            return [float(self.lpips(self._tensor([a]) * 2 - 1, self._tensor([b]) * 2 - 1)[0]) for a, b in zip(made, real)]

    def fid_features(self, frames: list[np.ndarray]):
        import torch.nn.functional as F

        with self.torch.inference_mode():
            return self.torch.cat([self.fid(F.interpolate(self._tensor([frame]), size=(FID_SIZE, FID_SIZE), mode="bicubic",
                                                     align_corners=False).clamp(0, 1)).double() for frame in frames]).numpy()

    def clip_embeddings(self, frames: list[np.ndarray]):
        model, processor = self.clip
        with self.torch.inference_mode():
            embedded = model.get_image_features(**processor(images=list(frames), return_tensors="pt"))
            embedded = getattr(embedded, "pooler_output", embedded)  # transformers 5 returns an output object
        return self.torch.nn.functional.normalize(embedded.double(), dim=-1)

    def scores(self, windows: list[tuple[np.ndarray, list[np.ndarray], np.ndarray]],
               truth: list[list[np.ndarray]] | None) -> dict[str, Any]:
        """An engine's learnt scores over ``windows`` (first, made frames, last); against ``truth`` (the real
        frames of each window) where there is one."""
        made = [frame for _, frames, _ in windows for frame in frames]
        result: dict[str, Any] = {}
        if self.lpips is not None:
            ends = [(frames[0], first) for first, frames, _ in windows] + [(frames[-1], last) for _, frames, last in windows]
            values = self.lpips_values([a for a, _ in ends], [b for _, b in ends])
            half = len(windows)
            result["end_lpips"] = [float(np.mean(values[:half])), float(np.mean(values[half:]))]
            if truth is not None:
                result["lpips"] = float(np.mean(self.lpips_values(made, [f for frames in truth for f in frames])))
        if self.fid is not None and truth is not None:
            result["fid"] = frechet_distance(self.fid_features(made), self.fid_features([f for t in truth for f in t]))
        if self.clip is not None:
            embedded = self.clip_embeddings(made)
            index = 0
            nearer = []
            for first, frames, last in windows:
                ends = self.clip_embeddings([first, last])
                for row in embedded[index:index + len(frames)]:
                    nearer.append(float((ends @ row).max()))
                index += len(frames)
            result["clip_ends"] = float(np.mean(nearer))
            if truth is not None:
                real = self.clip_embeddings([f for frames in truth for f in frames])
                result["clip_truth"] = float((embedded * real).sum(dim=-1).mean())
        return result


def frechet_distance(a, b) -> float:
    """FID of two sets of features (rows): |mu_a - mu_b|^2 + tr(Ca) + tr(Cb) - 2 tr((Ca Cb)^1/2).

    With the centred rows Xa, Xb (Ca = Xa'Xa / (na - 1)), the eigenvalues of Ca Cb other than zero are
    those of M M' for M = Xa Xb' (na x nb), so tr((Ca Cb)^1/2) is M's nuclear norm / sqrt((na-1)(nb-1)):
    exact, and a few frames cost a tiny SVD instead of two 2048x2048 matrix roots."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    centred_a, centred_b = a - a.mean(axis=0), b - b.mean(axis=0)
    scale_a, scale_b = max(len(a) - 1, 1), max(len(b) - 1, 1)
    root_trace = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    distance = (((a.mean(axis=0) - b.mean(axis=0)) ** 2).sum() + (centred_a ** 2).sum() / scale_a
                + (centred_b ** 2).sum() / scale_b - 2 * root_trace)
    return max(float(distance), 0.0)
