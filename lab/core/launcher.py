"""What a job asks of its executor: the launcher section of every study config.

A plain dataclass, so a recipe or study config can hold it without importing the executors; the executors
themselves (local, debug, slurm) and the check that the name is one of them live in lab.run.launch.

`extra_sbatch` goes into the batch script as `#SBATCH --key=value` lines, so it is checked like code: a key is an
option name (`[a-z][a-z0-9-_]*`), a value one line; options the lab sets itself are refused, and the resource
options (partition, time, nodes, ntasks-per-node, cpus-per-task, mem, gpus-per-node, gres) are read like the named
fields (`slurm_request`) so that the partition check sees what the job will really ask for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

SBATCH_KEY = re.compile(r"[a-z][a-z0-9_-]*")  # fullmatch: `$` would let a trailing newline through
# extra_sbatch options (written with '-', as submitit writes '_') that ask for what a named field asks for
RESOURCE_OPTIONS = ("partition", "time", "nodes", "ntasks-per-node", "cpus-per-task", "mem", "gpus-per-node", "gres")
# options the lab sets itself, or that contradict a named field: what to do instead
RESERVED_OPTIONS = {
    "array": "the lab submits its arrays itself",
    "dependency": "the lab sets each job's dependencies from the plan",
    "kill-on-invalid-dep": "the lab sets it on every job with a dependency",
    "output": "job logs go to the sweep's jobs/ folder",
    "error": "job logs go to the sweep's jobs/ folder",
    "open-mode": "job logs go to the sweep's jobs/ folder",
    "input": "jobs read no input",
    "job-name": "the lab names jobs <sweep>-<stage>",
    "signal": "set launcher.signal_delay_s",
    "wrap": "the lab writes the batch script",
    "parsable": "the lab reads sbatch's output itself",
    "test-only": "nothing would be submitted",
    "mem-per-cpu": "set launcher.mem_gb (memory per node)",
    "mem-per-gpu": "set launcher.mem_gb (memory per node)",
    "ntasks": "set launcher.tasks_per_node and launcher.nodes",
}


def extensible_dict() -> Any:
    """The default of a dict field whose keys are the user's (`extra_sbatch`, a sweep's `grid`): Hydra composes
    configs in struct mode, where `field={key: value}` may not add a key to an empty dict (only `+field=` could),
    so the dict is created open. Plain `{}` where omegaconf is not installed (a job's machine)."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return {}
    return OmegaConf.create({}, flags={"struct": False})


def plain_dict(value: Any) -> dict[str, Any]:
    """An `extensible_dict` default (an OmegaConf node) as the plain dict a dataclass instance holds."""
    if isinstance(value, dict):
        return value
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True)  # type: ignore[return-value]


def parse_slurm_time(text: str) -> int | None:
    """Slurm's [days-]hours:minutes:seconds (or minutes) -> minutes; None for UNLIMITED."""
    text = str(text).strip()
    if text in ("UNLIMITED", "infinite", "n/a", ""):
        return None
    if not re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", text):
        raise ValueError(f"{text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]] or UNLIMITED)")
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:  # MM, MM:SS or HH:MM:SS
        hours, minutes, seconds = ([0, 0] + parts)[-3:] if len(parts) == 3 else [0, *(parts + [0])[:2]]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


_MEMORY_UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_slurm_memory_mb(text: str) -> float:
    """Slurm's --mem size (a number with an optional K, M, G or T; megabytes without) -> megabytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", str(text).strip(), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a Slurm memory size (e.g. 4000, 16G, 512M)")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2).upper()]


def _count(text: str) -> int:
    """A count such as '2', or the smallest of a range such as '2-4' (what Slurm must at least provide)."""
    match = re.fullmatch(r"(\d+)(?:-\d+)?", str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a count")
    return int(match.group(1))


def _gpus_per_node(text: str) -> int:
    """--gpus-per-node: '2' or 'a100:2'."""
    match = re.fullmatch(r"(?:[\w.-]+:)?(\d+)", str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a GPU count ([type:]count)")
    return int(match.group(1))


def _gres_gpus(text: str) -> int:
    """GPUs in a --gres list such as 'gpu:2' or 'gpu:a100:1,shard:4' (other resources count none)."""
    total = 0
    for item in str(text).strip().split(","):
        name, *rest = item.strip().split(":")
        if name != "gpu":
            continue
        if rest and not rest[-1].isdigit():
            rest.append("1")  # gpu:a100 = one
        if len(rest) > 2:
            raise ValueError(f"{text!r}: cannot read a GPU count from {item!r}")
        total += int(rest[-1]) if rest else 1
    return total


def check_sbatch_options(options: dict[str, Any], where: str = "launcher.extra_sbatch") -> None:
    """Each key an sbatch option name the lab does not set itself, each value one line of plain text."""
    for key, value in options.items():
        if not isinstance(key, str) or not SBATCH_KEY.fullmatch(key):
            raise ValueError(f"{where}: {key!r} is not an sbatch option name (lower-case letters, digits, '-' and "
                             f"'_', starting with a letter)")
        option = key.replace("_", "-")
        if option in RESERVED_OPTIONS:
            raise ValueError(f"{where}.{key}: not allowed ({RESERVED_OPTIONS[option]})")
        known = (*RESOURCE_OPTIONS, *RESERVED_OPTIONS)
        abbreviates = [name for name in known if option not in known and name.startswith(option)]
        if abbreviates:  # sbatch takes an unambiguous prefix for the whole option name (an exact name wins)
            raise ValueError(f"{where}.{key}: write the option out ({' or '.join(abbreviates)}), not a prefix")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"{where}.{key}: the value must be a string or a number, got {value!r}")
        if any(char in str(value) for char in "\n\r\0"):
            raise ValueError(f"{where}.{key}: the value {str(value)!r} spans more than one line")


@dataclass
class LauncherConfig:
    """Where jobs run. The Slurm fields are ignored by the local and debug executors (local runs tasks_per_node
    processes per job, debug one)."""

    name: str = "local"  # local | debug | slurm
    max_parallel: int = 2  # local: jobs at once
    timeout_min: int = 120
    threads_per_job: int = 0  # 0: local: the machine's cores shared between parallel jobs; slurm: cpus_per_task
    partition: str = ""  # "" = the cluster's default partition
    cpus_per_task: int = 1
    tasks_per_node: int = 1  # > 1: one DDP process per task
    nodes: int = 1
    mem_gb: float = 2.0
    gpus_per_node: int = 0
    array_parallelism: int = 64
    # stage runs (render slices, pre-trainings, fine-tunes) one job runs one after another, each still its own point
    # (lab.run.pack); 0: 16 on Slurm, where every job pays Python + torch start-up, 1 locally (warm workers pay it
    # once). Set 1 where one task already takes hours.
    tasks_per_job: int = 0
    warm_workers: bool = True  # local: reuse worker processes between jobs (false: a fresh interpreter per job)
    signal_delay_s: int = 90  # submitit asks for SIGUSR2 this long before the time limit, to requeue
    # e.g. {account: myproj, qos: high}; open to new keys, so `launcher.extra_sbatch={account: x}` works without a '+'
    # (a default instance keeps the open node: a study schema reads its launcher's defaults from one)
    extra_sbatch: dict[str, str] = field(default_factory=extensible_dict)

    def __getstate__(self) -> dict[str, Any]:  # pickled jobs hold a plain dict: a job's machine may lack omegaconf
        return {**self.__dict__, "extra_sbatch": plain_dict(self.extra_sbatch)}

    def validate(self) -> None:
        for key in ("max_parallel", "timeout_min", "cpus_per_task", "tasks_per_node", "nodes", "array_parallelism"):
            if getattr(self, key) <= 0:
                raise ValueError(f"launcher.{key} must be positive, got {getattr(self, key)}")
        if self.tasks_per_job < 0:
            raise ValueError(f"launcher.tasks_per_job must be >= 0 (0: the executor's default), got "
                             f"{self.tasks_per_job}")
        if self.mem_gb <= 0 or self.gpus_per_node < 0:
            raise ValueError("launcher.mem_gb must be positive and launcher.gpus_per_node >= 0")
        check_sbatch_options(self.extra_sbatch)
        time_min = self.slurm_request()["time_min"]  # also reads extra_sbatch's resource options
        if self.name == "slurm" and time_min is not None and time_min * 60 <= self.signal_delay_s + 60:
            # Slurm may signal up to 60 s early: the job would be told to requeue the moment it starts
            raise ValueError(f"launcher.timeout_min={time_min} leaves no time before the requeue signal "
                             f"(signal_delay_s={self.signal_delay_s}); raise it or lower signal_delay_s")

    def slurm_request(self) -> dict[str, Any]:
        """What a Slurm job of this launcher asks for: the named fields, overridden by the resource options of
        `extra_sbatch` (their lines come last in the batch script, so they win). time_min None: UNLIMITED."""
        request: dict[str, Any] = dict(partition=self.partition, cpus_per_task=self.cpus_per_task,
                                       tasks_per_node=self.tasks_per_node, nodes=self.nodes, mem_gb=self.mem_gb,
                                       gpus_per_node=self.gpus_per_node, time_min=self.timeout_min)
        for key, value in self.extra_sbatch.items():
            option = key.replace("_", "-")
            try:
                if option == "partition":
                    request["partition"] = str(value).strip()
                elif option == "time":
                    request["time_min"] = parse_slurm_time(str(value))
                elif option in ("nodes", "ntasks-per-node", "cpus-per-task"):
                    request[{"nodes": "nodes", "ntasks-per-node": "tasks_per_node",
                             "cpus-per-task": "cpus_per_task"}[option]] = _count(str(value))
                elif option == "mem":
                    request["mem_gb"] = parse_slurm_memory_mb(str(value)) / 1024
                elif option == "gpus-per-node":
                    request["gpus_per_node"] = _gpus_per_node(str(value))
                elif option == "gres":
                    request["gpus_per_node"] = max(request["gpus_per_node"], _gres_gpus(str(value)))
            except ValueError as error:
                raise ValueError(f"launcher.extra_sbatch.{key}: {error}") from None
        return request

    def threads(self) -> int:
        if self.threads_per_job > 0:
            return self.threads_per_job
        if self.name == "slurm":
            return self.cpus_per_task
        return max(1, (os.cpu_count() or 1) // self.max_parallel)
