"""Runs that survive a time limit or preemption (train.py --resume): the training state after every epoch,
kept in the run folder until the run is complete, and the folder a run started again continues in.

    <run>/resume.pt   after each epoch, written to a temporary name and renamed (a kill mid-write leaves
                      the previous epoch's): the epoch; the bare model's trained weights (all of them; with
                      --lora, the adapters and head: training.trained_weights); the optimizer's, scheduler's
                      and loss scaler's states; every random generator of every process (Python's, numpy's,
                      torch's, the GPU's); the best epoch, its val macro-F1 and its trained weights; and
                      log.csv's rows so far. Deleted once test-metrics.json is written.

The same command again, with --resume, finds the newest incomplete run folder of the same settings (the
identity that --skip_if_done compares, runs.IDENTITY) that has a resume.pt, and continues after the
epoch it records: nothing of the finished epochs is trained again. Where there is none, but an interrupted
run of other settings is, a new run starts with a notice naming that run and how it differs. On a CPU the
result equals that of a run never interrupted, bit for bit (tests/test_resume.py kills one with SIGKILL).
PyTorch keeps no state beyond these; the data order needs none (inputs.length_grouped_batches draws it
from the seed and the epoch).
"""

import os
import pickle
import random
import re
import secrets
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from livedoor_classification import distributed
from livedoor_classification.runs import identity_differences, is_complete, model_dir_name, read_config, runs_like
from livedoor_classification.training import load_weights, trained_weights

STATE_FILE = "resume.pt"


def continued_run(runs_dir: Path, model_name: str, planned: dict, device: torch.device):
    """The run folder that --resume continues (rank 0's finding, the same for every process) and its training
    state (load); (None, None) where there is none, after a notice naming an interrupted run of other settings
    (not_continued), if there is one."""
    found = find_resumable_run(runs_dir, model_name, planned)
    notice = not_continued(runs_dir, model_name, planned) if found is None and distributed.is_main() else None
    run_dir = distributed.from_main(found)
    if run_dir is not None:
        return run_dir, load(run_dir, device)
    if notice:
        print(notice, file=sys.stderr)
    return None, None


def state_after(epoch: int, stopped: bool, precision: str, training, best, rows: list[dict]) -> dict:
    """What save() writes after an epoch, but for the random generators: the Training's (training.py) bare model,
    optimizer, scheduler and loss scaler, the best epoch so far (train.py's Best) and log.csv's rows."""
    return {
        "epoch": epoch,
        "stopped": stopped,  # by --patience: a run resumed after it is only evaluated
        "precision": precision,
        "model": trained_weights(training.bare_model),  # with --lora, the adapters and the head alone
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "scaler": training.scaler.state_dict(),
        "best_f1": best.f1,
        "best_epoch": best.epoch,
        "best_model": best.weights,
        "best_val_logits": best.val_logits,
        "log": rows,
    }


def restore(state: dict, training) -> None:
    """The training where state_after left it (load has restored the random generators)."""
    load_weights(training.bare_model, state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    training.scaler.load_state_dict(state["scaler"])


def find_resumable_run(runs_dir: Path, model_name: str, planned: dict) -> Path | None:
    """The newest incomplete run of this identity (runs.runs_like) that has a resume.pt; None if none."""
    for run_dir in reversed(runs_like(runs_dir, model_name, planned)):
        if (run_dir / STATE_FILE).is_file() and not is_complete(run_dir):
            return run_dir
    return None


def not_continued(runs_dir: Path, model_name: str, planned: dict) -> str | None:
    """When no run of these settings is there to continue: a notice naming the newest interrupted run of this
    model, learning rate and seed that --resume could continue with other settings, and the settings that
    differ; None if none. Runs of another learning rate or seed are other configurations of a sweep (under
    Slurm, array tasks training at this moment), never the one a user meant to continue."""
    folders = sorted(path.parent for path in (runs_dir / model_dir_name(model_name)).glob(f"*/*/{STATE_FILE}"))
    for run_dir in reversed(folders):
        config = None if is_complete(run_dir) else read_config(run_dir)
        if config is not None and (config.get("lr"), config.get("seed")) == (planned.get("lr"), planned.get("seed")):
            differences = ", ".join(
                f"{name} {shown(theirs)} (now {shown(ours)})"
                for name, theirs, ours in identity_differences(config, planned)
            )
            return (
                f"notice: --resume: {run_dir} is not continued, it was started with other settings: {differences}; "
                "a new run starts (the same command with those settings continues that one)"
            )
    return None


def shown(value) -> str:
    """A setting as it is typed on the command line."""
    return "none" if value is None else " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def random_state(device: torch.device) -> dict:
    """This process's random generators. numpy's as lists, so that torch.load(weights_only=True) reads it."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save(run_dir: Path | None, state: dict, device: torch.device) -> None:
    """Every process's random generators are gathered to rank 0 (a collective: call it on every rank),
    which writes them with `state` (the same on every rank) to <run_dir>/resume.pt."""
    generators = [random_state(device)]
    if dist.is_initialized():
        generators = [None] * distributed.world_size()
        dist.all_gather_object(generators, random_state(device))
    if not distributed.is_main():
        return
    path = run_dir / STATE_FILE
    remove_partial(run_dir)  # a state half-written when a kill came: gigabytes that nothing reads
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_state(state | {"random": generators}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_state(state: dict, path: Path) -> None:
    """torch.save to a file that Python writes, so that a failed write (a full disk) is an OSError that says
    why: given a path, torch's own writer raises a RuntimeError that does not ("unexpected pos 576 vs 534").
    Given a file, the OSError comes out alone or, when torch's clean-up then fails, as the RuntimeError's
    context. A RuntimeError without one still becomes an OSError naming the file: train.py reports it in a line."""
    try:
        with open(path, "wb") as f:
            torch.save(state, f)
    except RuntimeError as e:
        if isinstance(e.__context__, OSError):
            raise e.__context__ from None
        why = re.sub(r"^\[enforce fail at [^]]*\][ .]*", "", str(e).strip().splitlines()[0])  # where in C++: no help
        raise OSError(f"{STATE_FILE}: not written ({why})") from None


def load(run_dir: Path, device: torch.device) -> dict:
    """The state saved in run_dir, with this process's random generators already restored. Tensors come
    back on the CPU; load_state_dict moves them to where the model and optimizer are."""
    try:
        state = torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # a file cut short or damaged
        # torch's own message is a paragraph about weights_only: the kind of error is what helps here
        remedy = "delete it to train this run from the start"
        raise ValueError(
            f"{run_dir / STATE_FILE}: unreadable, cut short or damaged ({type(e).__name__}); {remedy}"
        ) from None
    generators = state.pop("random")
    if len(generators) != distributed.world_size():
        raise ValueError(f"{run_dir}: saved by {len(generators)} processes, resumed by {distributed.world_size()}")
    set_random_state(generators[distributed.rank()], device)
    return state


def remove(run_dir: Path | None) -> None:
    if run_dir is not None:
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        remove_partial(run_dir)


def remove_partial(run_dir: Path) -> None:
    for partial in run_dir.glob(f".{STATE_FILE}.*.tmp"):
        partial.unlink(missing_ok=True)
