"""run.sh's settings: its argument and variables read and checked (read(), SettingError: one line, exit status 2
in run.sh), the configurations they make, and run.sh's --help (HELP). The standard library only, because
run.sh runs this module before any environment with the dependencies is found or made:
`python3 -m livedoor_classification.sweep_settings [ARGUMENT]` prints one error line and exits 2 if a setting
is bad. src/sweep.py reads the same settings through read().
"""

import os
import re
import shutil
import sys
from dataclasses import dataclass, field

HELP = """The whole study in one command: fetch and prepare the corpus if needed, fine-tune every encoder x
learning rate x seed with src/train.py, run the TF-IDF baseline (src/baseline.py), and print the
summary table of src/aggregate.py (tables and plots in results/).

  bash run.sh                   # on a fresh clone too: creates .venv if no environment has the dependencies
  MODELS="tohoku-nlp/bert-base-japanese-v3 FacebookAI/xlm-roberta-base" LRS="3e-5" SEEDS="1 2 3" bash run.sh
  GPU=1 TRAIN_ARGS="--epochs 10 --batch_size 32" bash run.sh
  NPROC=4 bash run.sh           # each run on 4 GPUs through torchrun
  DATASET=reviews bash run.sh   # a dataset prepared with src/prepare.py --name reviews
  DATASET=/data/tickets OUTPUT_ROOT=/scratch/runs bash run.sh   # a prepared folder anywhere, runs elsewhere
  SAVE_MODEL=1 bash run.sh      # keep every run's best model in its folder (train.py --save_model)
  MODELS="Qwen/Qwen2.5-1.5B" LRS="1e-4 2e-4 5e-4" TRAIN_ARGS="--lora --gradient_checkpointing" bash run.sh   # LoRA
  GPUS="0 1 2 3" bash run.sh    # one run per GPU at a time (with NPROC=2: one per pair of GPUs)
  WORKERS=2 bash run.sh         # two runs at a time without GPUs
  bash run.sh --status          # the sweep's progress: done, running, failed, left, time left
  SBATCH_PARTITION=gpu bash run.sh --slurm   # submit it to Slurm: a job array, then the summary job

Arguments: none (run the sweep here), or one of
  --status           print how many configurations are done, running, failed and left, and the time left;
                     without the sweep's variables, of the sweep that runs or last ran in the output folder
  --slurm            submit the configurations not done yet as a Slurm job array (one per task, NPROC GPUs
                     each through --gres=gpu:NPROC unless SBATCH_GRES or SBATCH_GPUS* is set; sbatch's own
                     SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, ... are honoured), and the
                     baseline and summary as a job that starts after it (afterany)
  --configuration N  run the Nth configuration only (what each array task runs)
  --summary          the baseline and the summary only (what the job after the array runs)

Environment (space-separated lists):
  DATASET      a prepared dataset: a name (datasets/<name>/) or a folder path with a /  (default: livedoor)
  MODELS       hub ids or local directories                 (default: the list below)
  LRS          learning rates                               (default: 1e-5 3e-5 5e-5)
  SEEDS        seeds                                        (default: 42)
  OUTPUT_ROOT  where the runs go, <OUTPUT_ROOT>/<dataset>/   (default: outputs)
  TEXT_FIELDS  the text fields of every run and the baseline (default: the dataset's, from dataset.json)
  TRAIN_ARGS   extra arguments for every train.py run, passed as they are; the dataset, output root
               and text fields are set with the variables above, which every script is given
                                                            (default: none)
  GPU          value for CUDA_VISIBLE_DEVICES               (default: unchanged)
  NPROC        processes per run, a positive integer; > 1 launches torchrun  (default: 1)
  GPUS         GPUs to spread the sweep over: one run at a time on each group of NPROC of them, each with
               its own CUDA_VISIBLE_DEVICES, its output in a log file per configuration (default: unset)
  WORKERS      runs at a time without GPUs, CPU threads shared between them; with GPU, on that GPU
                                                            (default: unset, one at a time)
  CLAIM_TIMEOUT  seconds after which a claim that its sweep stopped refreshing is taken over (default: 600)
  PYTHON       the Python to run with, which must have the dependencies (default: the first that has
               them of the active virtualenv's, .venv/, Poetry's env and python3; if none has them,
               .venv is created from requirements.txt, hash-checked)
  SAVE_MODEL   1: every run also writes its best model       (default: 0, no weights written)
  RESULTS_DIR  aggregate.py writes to <RESULTS_DIR>/<dataset>/ (default: results/ beside OUTPUT_ROOT)

A variable set to a value it cannot take (NPROC=abc, SAVE_MODEL=yes, an empty MODELS, LRS or SEEDS, a
learning rate <= 0) stops run.sh before anything runs, with exit status 2.
Without datasets/livedoor/, the corpus is downloaded (src/download.sh, which honours LIVEDOOR_URL)
and split (src/prepare.py) first; a failure there stops everything. Another DATASET must have been
prepared with src/prepare.py.
Resumable: a configuration that already has a complete run of the same dataset in the output
folder is skipped (train.py and baseline.py --skip_if_done), so an interrupted sweep continues
where it stopped. A failing run does not stop the sweep: the table covers the runs that completed,
the failed configurations are listed at the end, and the exit status is 1. Ctrl-C stops the whole
sweep (exit status 130), not just the run in progress, and every run of GPUS or WORKERS; so does a
SIGTERM to run.sh (kill, timeout, a container's stop; exit status 143).
Several sweeps on one output folder (on one machine, or on several sharing the folder) split the work:
each configuration is claimed before it starts (src/livedoor_classification/claims.py), and one claimed
elsewhere is skipped.
"""

ACTIONS = ("--status", "--slurm", "--summary")
SPLIT_STUDY = ("--dataset", "--dataset_dir", "--output_root", "--text_fields")  # the sweep's own variables set these
DECIMAL = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
STATUS_VARIABLES = ("MODELS", "LRS", "SEEDS", "TRAIN_ARGS", "NPROC", "SAVE_MODEL", "TEXT_FIELDS")


class SettingError(ValueError):
    """A bad argument or variable: one line for stderr (with run.sh's name), exit status 2."""


@dataclass
class Configuration:
    """One run of the sweep: numbered from 1 in the order models x lrs x seeds, by every sweep alike."""

    number: int
    model: str
    lr: str
    seed: str

    @property
    def name(self) -> str:
        return f"{self.model} lr={self.lr} seed={self.seed}"


@dataclass
class Settings:
    action: str  # "sweep", "status", "slurm", "summary" or "configuration"
    number: int | None  # --configuration N
    models: list[str]
    lrs: list[str]
    seeds: list[str]
    nproc: int
    save_model: bool
    slots: list[str]  # GPUS / WORKERS: one CUDA_VISIBLE_DEVICES per run at a time; empty: one run after another
    claim_timeout: int
    train_args: list[str]
    dataset: str  # DATASET as given: a name, or a folder if it holds a /
    output_root: str | None  # OUTPUT_ROOT if set
    text_fields: list[str]
    results_dir: str | None
    gpu: str  # GPU: CUDA_VISIBLE_DEVICES of every run
    given_variables: bool  # any of STATUS_VARIABLES set (--status: else the plan of the sweep last run)
    configurations: list[Configuration] = field(default_factory=list)

    @property
    def dataset_args(self) -> list[str]:
        """For train.py, baseline.py and aggregate.py alike."""
        return ["--dataset_dir", self.dataset] if "/" in self.dataset else ["--dataset", self.dataset]

    @property
    def shared_args(self) -> list[str]:
        """What every script of the study is given: the dataset, the output root, the text fields."""
        args = list(self.dataset_args)
        if self.output_root:
            args += ["--output_root", self.output_root]
        if self.text_fields:
            args += ["--text_fields", *self.text_fields]
        return args


def usage_error(message: str) -> SettingError:
    return SettingError(f"{message} (see bash run.sh --help)")


def action_of(argv: list[str]) -> tuple[str, int | None]:
    """The argument: none, --status, --slurm, --summary or --configuration N (what follows is ignored)."""
    first = argv[0] if argv else ""
    if first == "":
        return "sweep", None
    if first in ACTIONS:
        return first[2:], None
    if first == "--configuration":
        if len(argv) < 2 or not re.fullmatch(r"[1-9][0-9]*", argv[1]):
            raise SettingError("--configuration takes a number, 1 for the first configuration")
        return "configuration", int(argv[1])
    raise SettingError(f"unknown argument '{first}' (configure with environment variables; see bash run.sh --help)")


def listed(env: dict, name: str, default: str) -> list[str]:
    """A list variable: set but empty is a mistake (MODELS="$mine" with $mine unset), not "the default"."""
    if name not in env:
        return default.split()
    if not env[name].split():
        raise usage_error(f"{name} is set but empty; give at least one value, or unset it for the default")
    return env[name].split()


def counted(env: dict, name: str, default: str, digits: int, what: str) -> int:
    """A positive integer variable, leading zeros allowed, of at most `digits` digits."""
    value = env.get(name, default)
    if not re.fullmatch(rf"0*[1-9][0-9]{{0,{digits - 1}}}", value):
        raise usage_error(f"{name} is '{value}'; {what}")
    return int(value)


def slots_of(env: dict, nproc: int) -> list[str]:
    """GPUS: a CUDA_VISIBLE_DEVICES per group of NPROC GPUs; WORKERS: that many runs on GPU's (or no) GPUs."""
    slots = []
    if "GPUS" in env:
        gpus = env["GPUS"].split()
        for gpu in gpus:
            if not re.fullmatch(r"[0-9]+|(GPU|MIG)-[A-Za-z0-9/-]+", gpu):
                raise usage_error(
                    f"GPUS holds '{gpu}'; it lists GPU numbers (or UUIDs) as nvidia-smi shows them, "
                    'such as GPUS="0 1 2 3"'
                )
        if not gpus or len(gpus) % nproc:
            raise usage_error(
                f"GPUS lists {len(gpus)} GPUs, not a multiple of NPROC={nproc}: each run takes NPROC of them"
            )
        if env.get("GPU"):
            raise usage_error("GPU and GPUS are both set; GPUS alone spreads the sweep over GPUs")
        if "WORKERS" in env:
            raise usage_error("WORKERS and GPUS are both set; GPUS runs one run per GPU, WORKERS without GPUs")
        slots = [",".join(gpus[i : i + nproc]) for i in range(0, len(gpus), nproc)]
    if "WORKERS" in env:
        workers = counted(env, "WORKERS", "", 4, "it is a positive integer, the runs at a time without GPUs")
        slots += [env.get("GPU", "")] * workers
    return slots


def read(argv: list[str], env: dict) -> Settings:
    """run.sh's argument and variables, every one checked (SettingError) before anything runs: a bad one
    used to show late or never (NPROC=abc stopped the sweep after the download, SAVE_MODEL=yes kept no
    model, MODELS="" swept the 15 defaults, LRS=0 failed each run in turn). The defaults of MODELS, LRS
    and SEEDS come from run.sh (DEFAULT_MODEL_LIST, DEFAULT_LRS, DEFAULT_SEEDS)."""
    action, number = action_of(argv)
    models = listed(env, "MODELS", env.get("DEFAULT_MODEL_LIST", ""))
    lrs = listed(env, "LRS", env.get("DEFAULT_LRS", ""))
    seeds = listed(env, "SEEDS", env.get("DEFAULT_SEEDS", ""))
    if not (models and lrs and seeds):
        raise SettingError("MODELS, LRS and SEEDS have their defaults in run.sh: run the sweep with bash run.sh")
    for lr in lrs:  # a decimal number as float() reads it, with a non-zero digit before any exponent
        if not (DECIMAL.fullmatch(lr) and re.search("[1-9]", re.split("[eE]", lr)[0])):
            raise usage_error(f"LRS holds '{lr}'; learning rates are numbers above 0, such as 3e-5")
    for seed in seeds:  # train.py seeds numpy too, which takes 0 to 2**32 - 1
        if not (re.fullmatch("[0-9]+", seed) and int(seed) <= 2**32 - 1):
            raise usage_error(f"SEEDS holds '{seed}'; seeds are integers from 0 to 4294967295")
    nproc = counted(env, "NPROC", "1", 6, "it is a positive integer, the processes per run")
    if env.get("SAVE_MODEL", "0") not in ("0", "1"):
        raise usage_error(f"SAVE_MODEL is '{env['SAVE_MODEL']}'; it is 1 (every run writes its best model) or 0 (none)")
    slots = slots_of(env, nproc)
    claim_timeout = counted(env, "CLAIM_TIMEOUT", "600", 9, "it is a positive number of seconds")
    if action == "slurm":
        if shutil.which("sbatch") is None:
            raise usage_error(
                "--slurm needs sbatch, which is not on PATH: run it on a Slurm login node (module load slurm?)"
            )
        if env.get("GPU") or "GPUS" in env or "WORKERS" in env:
            raise usage_error(
                "GPU, GPUS and WORKERS are for one machine; under --slurm each run gets NPROC GPUs from Slurm"
            )
    # TRAIN_ARGS goes to train.py as it is. What the baseline and the summary must agree on comes from the
    # sweep's own variables instead, so a second copy of it in TRAIN_ARGS would split the study in two.
    train_args = env.get("TRAIN_ARGS", "").split()
    for word in train_args:
        if word.split("=")[0] in SPLIT_STUDY and (word in SPLIT_STUDY or "=" in word):
            raise usage_error(f"TRAIN_ARGS gives {word.split('=')[0]}; set DATASET, OUTPUT_ROOT or TEXT_FIELDS instead")
    settings = Settings(
        action=action,
        number=number,
        models=models,
        lrs=lrs,
        seeds=seeds,
        nproc=nproc,
        save_model=env.get("SAVE_MODEL") == "1",
        slots=slots,
        claim_timeout=claim_timeout,
        train_args=train_args,
        dataset=env.get("DATASET") or "livedoor",
        output_root=env.get("OUTPUT_ROOT") or None,
        text_fields=env.get("TEXT_FIELDS", "").split(),
        results_dir=env.get("RESULTS_DIR") or None,
        gpu=env.get("GPU", ""),
        given_variables=any(name in env for name in STATUS_VARIABLES),
    )
    numbered = ((model, lr, seed) for model in models for lr in lrs for seed in seeds)
    settings.configurations = [Configuration(n, *c) for n, c in enumerate(numbered, start=1)]
    total = len(settings.configurations)
    if action == "configuration" and number > total:
        raise usage_error(f"--configuration {number}: the sweep has {total} configuration{'s' if total != 1 else ''}")
    return settings


def help_text(env: dict) -> str:
    models = env.get("DEFAULT_MODEL_LIST", "").split()
    return HELP + f"\nDefault MODELS ({len(models)}):\n" + "".join(f"  {m}\n" for m in models)


if __name__ == "__main__":  # run.sh, before the environment: --help, or the checks (one line, exit status 2)
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(help_text(os.environ), end="")
        sys.exit(0)
    try:
        read(sys.argv[1:], dict(os.environ))
    except SettingError as e:
        print(f"run.sh: error: {e}", file=sys.stderr)
        sys.exit(2)
