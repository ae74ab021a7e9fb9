"""Child process of `export.accelerator.run_on_gpu`: runs one `.tflite` file with LiteRT's
`CompiledModel` on an accelerator and writes what happened into a folder.

    python -m keras_vit.export.accelerator_child MODEL.tflite FOLDER [--accelerator gpu|cpu] [--runs N]

Reads `FOLDER/inputs.npy` (`[num_batches * batch, ...]` in the model's input dtype), writes
`FOLDER/outputs.npy` (raw output dtype) and `FOLDER/result.json`. A delegate CHECK failure
aborts this process (SIGABRT): `result.json` then still names the last stage reached
(`compiling` or `running`), and the parent reads the reason from this process's stderr.
Imports only LiteRT and NumPy (no TensorFlow), so it starts in about a second.
"""

import argparse
import json
import os
import sys
import time


def _write_json(folder, result):
    tmp = os.path.join(folder, "result.json.tmp")
    with open(tmp, "w") as file:
        json.dump(result, file)
    os.replace(tmp, os.path.join(folder, "result.json"))


def _transport_dtype(dtype):
    """The dtype a LiteRT TensorBuffer moves `dtype` as: its Python API has no int16 (ai-edge-quantizer's
    int16x8 files have int16 inputs and outputs), so int16 travels as float16, two bytes unconverted."""
    import numpy as np

    return np.dtype(np.float16) if np.dtype(dtype) == np.int16 else np.dtype(dtype)


def run(model_path, folder, accelerator="gpu", runs=20, warmup=3, enforce_f32=False):
    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.options import CpuOptions, GpuOptions, Options

    result = {"stage": "compiling", "accelerator": accelerator}
    _write_json(folder, result)
    # GPU with the CPU as fallback for the ops the GPU cannot run, as an app would ask for it;
    # whether everything landed on the GPU is `is_fully_accelerated()`.
    flags = HardwareAccelerator.CPU
    if accelerator == "gpu":
        flags = HardwareAccelerator.GPU | HardwareAccelerator.CPU
    options = Options(hardware_accelerators=flags, cpu_options=CpuOptions(num_threads=1),
                      gpu_options=GpuOptions(enforce_f32=enforce_f32))
    model = CompiledModel.from_file(model_path, options=options)
    result.update(stage="running", fully_accelerated=model.is_fully_accelerated())
    _write_json(folder, result)

    signature = list(model.get_signature_list())[0]
    input_detail = list(model.get_input_tensor_details(signature).values())[0]
    output_detail = list(model.get_output_tensor_details(signature).values())[0]
    input_shape = [int(s) for s in input_detail["shape"]]
    output_shape = [int(s) for s in output_detail["shape"]]
    output_dtype = np.dtype(output_detail["dtype"])
    read_dtype = _transport_dtype(output_dtype)
    inputs = np.load(os.path.join(folder, "inputs.npy"))
    batch = input_shape[0]
    inputs = inputs.reshape((-1, *input_shape))
    input_buffers = model.create_input_buffers(0)
    output_buffers = model.create_output_buffers(0)
    count = int(np.prod(output_shape))
    outputs = []
    inputs = np.ascontiguousarray(inputs).view(_transport_dtype(inputs.dtype))
    for chunk in inputs:
        input_buffers[0].write(np.ascontiguousarray(chunk))
        model.run_by_index(0, input_buffers, output_buffers)
        outputs.append(output_buffers[0].read(count, read_dtype).view(output_dtype).reshape(output_shape))
    np.save(os.path.join(folder, "outputs.npy"), np.concatenate(outputs) if outputs else np.zeros((0,)))

    # Latency of one batch: run plus reading the output back (which waits for the GPU).
    times = []
    if len(inputs):
        input_buffers[0].write(np.ascontiguousarray(inputs[0]))
        for index in range(warmup + runs):
            start = time.perf_counter()
            model.run_by_index(0, input_buffers, output_buffers)
            output_buffers[0].read(count, read_dtype)
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    result.update(stage="done", status="runs", batch_size=batch, times_ms=times)
    _write_json(folder, result)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_vit.export.accelerator_child")
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("--accelerator", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--enforce-f32", dest="enforce_f32", action="store_true")
    args = parser.parse_args(argv)
    try:
        run(args.model, args.folder, args.accelerator, args.runs, args.warmup, args.enforce_f32)
    except Exception as error:  # LiteRT raises RuntimeError with a multi-line trace
        lines = [line.strip(" └") for line in str(error).splitlines() if line.strip(" └")]
        own = [line for line in lines if not line.startswith("ERROR: [")]  # not LiteRT's source lines
        message = (own or lines or [""])[-1]
        path = os.path.join(args.folder, "result.json")
        result = {}
        if os.path.exists(path):
            with open(path) as file:
                result = json.load(file)
        result.update(status="failed", message=f"{type(error).__name__}: {message}")
        _write_json(args.folder, result)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
