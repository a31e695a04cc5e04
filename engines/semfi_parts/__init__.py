"""The pieces of the SemFi engine (see ``engines/semfi.py`` for how they fit together).

- ``rules``: every numeric rule of the method (frame counts, expert choice, mask, guidance
  video, pixel ranges, working size), as plain functions checked against ``docs/semfi-method.md``.
- ``loading``: reads a Wan2.1-I2V folder into diffsynth's model classes, architecture taken
  from the files themselves; local files only.
- ``mol``: reads ``semfi.ckpt`` and merges the universal + chosen expert LoRA into the DiT.
- ``memory``: what each GPU memory mode needs and which one fits.
- ``sampler``: conditioning, the flow-matching sampling loop and decoding.
- ``schedule``: the timesteps a run samples (steps and shift, or an explicit list).
- ``stepcache``: the MagCache-style step cache: curves, which passes a run skips, calibration.
- ``extra_lora``: LoRAs merged beside the Mixture-of-LoRA (key formats, the formula).
- ``delivery``: turns the model's frames into exactly the frames an editor asked for.
- ``diagnosis``: whether everything SemFi needs is here (``SemFiEngine.diagnose``), for
  availability, ``auto`` and ``sfi doctor`` alike.
- ``backends``: how each DiT pass runs (eager, compile, onnx, tensorrt), our exportable DiT
  forward, the ONNX export, TensorRT engines and their cache.

Only ``engines/semfi.py`` imports these, and only once the engine is used.
"""
