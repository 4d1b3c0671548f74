"""The sandboxed child: confines itself, then trains a candidate or computes its outputs.

Started by launcher.run_sandboxed as ``python -I child.py MODE CONFIG_JSON``. Everything up to
the import of candidate code is the harness's; after it, nothing this process says is trusted:
the harness reads the checkpoint and the logits (or outputs) and computes every score itself.
Reports go to an inherited pipe (``result_fd``) as JSON lines; the candidate's output goes to
the log.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # -I drops PYTHONPATH

import contextlib

from dreamteam.harness.sandbox import logits_wire
from dreamteam.harness.sandbox.limits import WALLS_EXIT
from dreamteam.harness.sandbox.walls import (
    SYSTEM_READ_DIRS,
    apply_landlock,
    apply_seccomp,
    drop_capabilities,
    install_audit_hook,
    python_read_dirs,
)

BUDGET_EXIT = 3


def _report(config: dict[str, Any], payload: dict[str, Any]) -> None:
    os.write(config["result_fd"], (json.dumps(payload) + "\n").encode())


def _set_limits(config: dict[str, Any]) -> list[str]:
    limits = config["limits"]
    for path in config.get("cgroup_procs", []):
        with contextlib.suppress(OSError):
            Path(path).write_text(str(os.getpid()))
    pairs = [
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, limits["max_processes"]),
        # a backstop where no memory cgroup exists; RLIMIT_AS would break torch's threads
        (resource.RLIMIT_DATA, limits["memory_bytes"] + (512 << 20)),
    ]
    applied = 0
    for which, value in pairs:
        try:
            _soft, hard = resource.getrlimit(which)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (cap, cap))
            applied += 1
        except (ValueError, OSError):
            pass
    return ["rlimits"] if applied == len(pairs) else []


def _confine(config: dict[str, Any]) -> list[str]:
    work_dir = Path(config["work_dir"])
    layers = _set_limits(config)
    read = [Path(p) for p in SYSTEM_READ_DIRS] + python_read_dirs()
    read += [Path(p) for p in config.get("read_dirs", [])]
    layers += apply_landlock([work_dir], read)
    layers += drop_capabilities()  # after the cgroup writes above, which need root's powers
    layers += apply_seccomp()
    install_audit_hook(work_dir)
    layers.append("audit-hook")
    if missing := sorted(set(config.get("require_layers", ())) - set(layers)):
        _report(config, {"confined": layers, "walls_missing": missing})
        os._exit(WALLS_EXIT)  # before any candidate code
    # the first line on the result channel, written before any candidate code runs: the one
    # line the harness can trust, and its record of which walls really stood
    _report(config, {"confined": layers})
    sys.path.insert(0, str(work_dir))
    return layers


def _call_with_accepted(fn: Any, kwargs: dict[str, Any]) -> Any:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def _train(config: dict[str, Any]) -> int:
    import torch

    torch.set_num_threads(max(int(config["threads"]), 1))
    layers = _confine(config)
    budget = int(config["iters"])
    state: dict[str, Any] = {"steps": 0, "max_batch": [0, 0]}

    def on_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        state["steps"] += 1
        if state["steps"] > budget:
            _report(
                config,
                {
                    "error": f"exceeded the budget of {budget} optimizer steps",
                    "budget_exceeded": True,
                    "steps": state["steps"],
                    "layers": layers,
                },
            )
            os._exit(BUDGET_EXIT)

    def on_forward(module: Any, args: Any) -> None:
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            if x.dim() == 2 and not x.is_floating_point():
                state["max_batch"] = [
                    max(state["max_batch"][0], x.shape[0]),
                    max(state["max_batch"][1], x.shape[1]),
                ]

    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(on_step)
    register_module_forward_pre_hook(on_forward)
    start = time.monotonic()
    try:
        module = importlib.import_module(Path(config["entry_file"]).stem)
        fn = getattr(module, config["entry_point"])
        returned = _call_with_accepted(
            fn,
            {
                "data_dir": config["data_dir"],
                "out_dir": config["work_dir"],
                "iters": budget,
                "seed": int(config["seed"]),
                "device": config["device"],
            },
        )
    except BaseException as exc:
        traceback.print_exc()
        _report(
            config,
            {
                "error": _describe(exc),
                "steps": state["steps"],
                "layers": layers,
                "memory_error": isinstance(exc, MemoryError),
            },
        )
        return 1
    values = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    numbers = [float(v) if isinstance(v, (int, float)) or _is_scalar(v) else None for v in values]
    _report(
        config,
        {
            "returned": [n if n is None or math.isfinite(n) else str(n) for n in numbers],
            "returned_types": [type(v).__name__ for v in values],
            "steps": state["steps"],
            "max_batch": state["max_batch"],
            "train_seconds": time.monotonic() - start,
            "layers": layers,
        },
    )
    return 0


def _is_scalar(value: Any) -> bool:
    try:
        return getattr(value, "numel", lambda: 0)() == 1
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


_CKPT_FORM = '{"model_args": dict, "state_dict": model.state_dict()}'


def checkpoint_parts(ckpt: Any) -> tuple[dict[str, Any], Any]:
    """The model_args and state_dict of a loaded checkpoint, or a ValueError saying its form."""
    if not isinstance(ckpt, dict) or not {"model_args", "state_dict"} <= set(ckpt):
        if isinstance(ckpt, dict):
            keys = ", ".join(str(k) for k in list(ckpt)[:3]) + (", ..." if len(ckpt) > 3 else "")
            found = f"a dict with keys {keys or '(none)'}"
        else:
            found = type(ckpt).__name__
        raise ValueError(f"the checkpoint must be {_CKPT_FORM}, not {found}")
    if not isinstance(ckpt["model_args"], dict):
        found = type(ckpt["model_args"]).__name__
        raise ValueError(f"the checkpoint's model_args must be a dict, not {found}")
    return dict(ckpt["model_args"]), ckpt["state_dict"]


def _load_model(
    config: dict[str, Any], work_dir: Path, device: str = "cpu"
) -> tuple[Any, dict[str, Any]]:
    """The candidate's model from its own code and its checkpoint (weights only: no pickle),
    on `device` (the trial's: the harness chose it, never this file)."""
    import torch

    module = importlib.import_module(Path(config["model_file"]).stem)
    ckpt = torch.load(work_dir / "ckpt.pt", map_location=device, weights_only=True)
    args, state_dict = checkpoint_parts(ckpt)
    build = getattr(module, config["model_class"])
    if config["config_class"]:
        model = build(getattr(module, config["config_class"])(**args))
    else:  # a model that takes its arguments as keywords itself
        model = build(**args)
    model.load_state_dict(state_dict)
    model.to(device).eval()
    return model, args


def _logits(model: Any, x: Any) -> Any:
    out = model(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def _sample(config: dict[str, Any]) -> int:
    """Generate tokens from a trained candidate: temperature, top-k and top-p sampling."""
    import torch

    torch.set_num_threads(max(int(config["threads"]), 1))
    _confine(config)
    try:
        model, args = _load_model(config, Path(config["work_dir"]))
        gen = torch.Generator().manual_seed(int(config["seed"]))
        idx = torch.tensor([config["prompt"] or [0]], dtype=torch.long)
        context = int(args.get("block_size", config["context"]))
        with torch.no_grad():
            for _ in range(int(config["max_new_tokens"])):
                logits = _logits(model, idx[:, -context:])[
                    0, -1, : int(config["vocab_size"])
                ].float()
                logits = logits / max(float(config["temperature"]), 1e-6)
                if config["top_k"]:
                    kth = torch.topk(logits, min(int(config["top_k"]), logits.numel())).values[-1]
                    logits[logits < kth] = -float("inf")
                probs = torch.softmax(logits, dim=-1)
                if float(config["top_p"]) < 1.0:
                    sorted_p, order = torch.sort(probs, descending=True)
                    drop = sorted_p.cumsum(0) - sorted_p > float(config["top_p"])
                    probs[order[drop]] = 0.0
                    probs /= probs.sum()
                nxt = torch.multinomial(probs, 1, generator=gen)
                idx = torch.cat([idx, nxt[None]], dim=1)
    except BaseException as exc:
        traceback.print_exc()
        _report(config, {"error": _describe(exc)})
        return 1
    _report(config, {"tokens": idx[0].tolist()})
    return 0


def _evaluate(config: dict[str, Any]) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(max(int(config["threads"]), 1))
    work_dir = Path(config["work_dir"])
    # started early, this process imports torch while the harness trains the model; it
    # stages the weights and the inputs, then says go (no line: nothing to score)
    if config.get("wait_for_go") and not sys.stdin.readline().strip():
        return 0
    inputs = np.load(work_dir / "inputs.npy")
    layers = _confine(config)
    vocab, chunk = int(config["vocab_size"]), int(config["chunk"])
    _n, t = inputs.shape
    # two slots: the harness reduces one chunk while this process fills the other
    _, memory = logits_wire.mapped(int(config["logits_fd"]), chunk, t, vocab)
    try:
        device = str(config.get("device", "cpu"))
        model, args = _load_model(config, work_dir, device)
        n_params = sum(p.numel() for p in model.parameters())
        _report(
            config,
            {"ready": True, "model_args": _plain(args), "n_params": n_params, "layers": layers},
        )
        for line in sys.stdin:
            i = int(line)
            x = torch.from_numpy(inputs[i * chunk : (i + 1) * chunk]).long().to(device)
            with torch.no_grad():
                logits = _logits(model, x)
            if (
                not isinstance(logits, torch.Tensor)
                or tuple(logits.shape[:2]) != tuple(x.shape)
                or logits.shape[-1] < vocab
                or logits.dim() != 3
            ):
                shape = tuple(getattr(logits, "shape", ()))
                raise ValueError(
                    f"model(idx) must return logits of shape (B, T, >={vocab}), got {shape}"
                )
            wire = logits_wire.wire_of(logits.dtype)  # converted, where needed, in the copy
            out = logits_wire.slot(memory, i % 2, wire, (chunk, t, vocab))
            out[: len(x)].copy_(logits[..., :vocab])
            _report(config, {"chunk": i, "dtype": wire})
    except BaseException as exc:
        traceback.print_exc()
        _report(config, {"error": _describe(exc), "memory_error": isinstance(exc, MemoryError)})
        return 1
    return 0


def _outputs(config: dict[str, Any]) -> int:
    """A user task's model on its evaluation inputs: one output row per input row, to a file.

    Only the inputs are here; the targets, and the metric that compares them with the
    outputs, stay with the harness. Rows go through the model in the harness's order and
    batches, so that the harness can check each row's output depends on that row alone.
    """
    import numpy as np
    import torch

    torch.set_num_threads(max(int(config["threads"]), 1))
    work_dir = Path(config["work_dir"])
    inputs = np.load(work_dir / "inputs.npy", allow_pickle=False)
    layers = _confine(config)
    batch = int(config["batch"])
    try:
        model, args = _load_model(config, work_dir)
        n_params = sum(p.numel() for p in model.parameters())
        outputs: Any = None
        for start in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[start : start + batch])
            with torch.no_grad():
                out = _logits(model, x)
            if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != len(x):
                shape = tuple(getattr(out, "shape", ()))
                raise ValueError(
                    f"model(x) must return a tensor with one row per input row, got {shape} "
                    f"for {len(x)} rows"
                )
            rows = out.detach().float().cpu().numpy()
            if outputs is None:
                outputs = np.empty((len(inputs), *rows.shape[1:]), dtype=np.float32)
            elif rows.shape[1:] != outputs.shape[1:]:
                raise ValueError(
                    f"model(x) returned rows of shape {rows.shape[1:]} after {outputs.shape[1:]}"
                )
            outputs[start : start + len(x)] = rows
        np.save(work_dir / "outputs.npy", outputs)
    except BaseException as exc:
        traceback.print_exc()
        _report(config, {"error": _describe(exc), "memory_error": isinstance(exc, MemoryError)})
        return 1
    _report(
        config,
        {"done": True, "model_args": _plain(args), "n_params": n_params, "layers": layers},
    )
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def run(mode: str, config: dict[str, Any]) -> int:
    """Run one stage in this process (spawned, or forked from the template); its exit code.

    `check` raises the walls and ends: the template compares its layers with a spawned one's.
    """
    os.chdir(config["work_dir"])
    modes = {"train": _train, "eval": _evaluate, "outputs": _outputs, "sample": _sample}
    if mode == "check":
        _report(config, {"layers": _confine(config)})
        return 0
    return modes[mode](config)


def main() -> int:
    """Entry point of the child: ``child.py train|eval|outputs|sample|check CONFIG_JSON``."""
    return run(sys.argv[1], json.loads(sys.argv[2]))


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
