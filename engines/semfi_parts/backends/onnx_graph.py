"""The DiT as one ONNX graph: export, inspection, and running it under onnxruntime.

One graph serves every working size, frame count and expert: the latent frames, height and width
are dynamic (TensorRT narrows them to optimisation profiles when it builds), and the expert's
rank-r LoRA comes as 30 inputs (``dit.expert_input_names``) beside the five the sampler gives.
Weights go to one external-data file beside the graph (``dit.onnx.data``), which a 14B graph
needs (protobuf stops at 2 GB) and a tiny one uses too, so both take the same path.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from engines.errors import EngineError
from engines.semfi_parts.backends.dit import expert_input_names

GRAPH = "dit.onnx"
INPUTS = ("latents", "timestep", "context", "clip_feature", "y")
OUTPUT = "velocity"
# Latent size limits of the dynamic axes: 1..64 latent frames (253 model frames), up to 2048 px a side.
MAX_LATENT_FRAMES = 64
MAX_HALF_LATENT = 128
FORBIDDEN_TYPES = ("DOUBLE", "COMPLEX64", "COMPLEX128")
# Opset 20: LayerNormalization and Gelu as single ops, which TensorRT 10.12+ and 11 parse; pinned so that a newer
# torch default (Attention, RMSNormalization at 23) does not change what the builder gets.
OPSET = 20


def example_inputs(dit, text_len: int, dtype, device, frames: int = 3, half_height: int = 2, half_width: int = 3):
    """Sample inputs of the exported forward's shapes (small; the graph's sizes are dynamic)."""
    import torch

    text_dim = dit.text_embedding[0].in_features
    latent = (1, 16, frames, 2 * half_height, 2 * half_width)
    make = dict(dtype=dtype, device=device)
    return (torch.randn(latent, **make), torch.full((1,), 500.0, **make), torch.randn(1, text_len, text_dim, **make),
            torch.randn(1, 257, 1280, **make), torch.randn(1, 20, *latent[2:], **make))


def export_graph(module, expert: dict, text_len: int, folder: Path) -> Path:
    """Export ``module`` (an ``ExportableDiT`` on the universal-merged DiT) with ``expert`` tensors as inputs
    into ``folder``; returns the graph's path."""
    import torch
    from torch.export import Dim

    from engines.semfi_parts.loading import quiet

    weight = module.dit.patch_embedding.weight
    args = example_inputs(module.dit, text_len, weight.dtype, weight.device)
    frames = Dim("latent_frames", min=1, max=MAX_LATENT_FRAMES)
    height, width = Dim("half_height", min=1, max=MAX_HALF_LATENT), Dim("half_width", min=1, max=MAX_HALF_LATENT)
    spatial = {2: frames, 3: 2 * height, 4: 2 * width}
    dynamic = {"latents": spatial, "timestep": None, "context": None, "clip_feature": None, "y": spatial,
               "expert": {name: None for name in expert}}
    path = Path(folder) / GRAPH
    with torch.no_grad(), quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)  # derived dims share names
        program = torch.onnx.export(module.eval(), args, kwargs={"expert": expert}, dynamo=True, dynamic_shapes=dynamic,
                                    opset_version=OPSET, input_names=[*INPUTS, *expert_input_names()],
                                    output_names=[OUTPUT], optimize=True)
        program.save(str(path), external_data=True)
    return path


def graph_types(path: Path) -> tuple[set[str], set[str]]:
    """(operator types, element types) used anywhere in the graph: tensors, initializers, casts, constants."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    name = onnx.TensorProto.DataType.Name
    graph = model.graph
    elements = {name(v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output, *graph.value_info]
                if v.type.HasField("tensor_type")}
    elements |= {name(t.data_type) for t in graph.initializer}
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name == "to":
                elements.add(name(attribute.i))
            if attribute.type == onnx.AttributeProto.TENSOR:
                elements.add(name(attribute.t.data_type))
    return {node.op_type for node in graph.node}, elements


def check_graph(path: Path) -> None:
    """Refuse a graph a TensorRT strongly typed build would reject or run in float64."""
    _, elements = graph_types(path)
    bad = sorted(set(FORBIDDEN_TYPES) & elements)
    if bad:
        raise EngineError(f"exported graph '{path}' holds {', '.join(bad)} tensors; delete it and export again")


class OnnxDenoiser:
    """The graph under onnxruntime's CPU provider: torch tensors in, the velocity back as a torch tensor."""

    def __init__(self, path: Path, source, store, threads: int = 0) -> None:
        """``threads``: onnxruntime's intra-op threads (0: its default, every core)."""
        import onnxruntime

        self.source, self.store = source, store
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # warnings about unused initializers are not the user's business
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.expert: dict | None = None

    def use_expert(self, expert: int) -> None:
        self.expert = {name: tensor.cpu().numpy() for name, tensor in self.source.expert_tensors(expert).items()}

    def __call__(self, latents, timestep, context, clip_feature, y):
        import torch

        if self.expert is None:
            raise RuntimeError("use_expert must be called before the first pass")
        feeds = {name: tensor.detach().cpu().numpy() for name, tensor in
                 zip(INPUTS, (latents, timestep, context, clip_feature, y))}
        (velocity,) = self.session.run([OUTPUT], {**feeds, **self.expert})
        return torch.from_numpy(velocity).to(latents.device)

