"""Executors and the overlap of LLM calls with training.

The local and Ray executors take jobs that arrive over time and yield every result exactly
once; a Ray worker that dies is retried once, then recorded as crashed; concurrent proposals
give the same candidates, ids and seeds as asking one persona at a time; and a small real
generation gives the same statuses on a local Ray instance as on the local executor.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamteam.agents import AgentResponse, build_team, parse_model_map
from dreamteam.agents.factory import Credentials
from dreamteam.config import RunConfig, load_run_config
from dreamteam.errors import ConfigError, DataError
from dreamteam.execute.devices import cpu_threads, worker_devices
from dreamteam.execute.jobs import Job
from dreamteam.execute.local import LocalExecutor
from dreamteam.harness.sandbox.launcher import probe_isolation
from dreamteam.harness.trial import TrialBudget
from dreamteam.loop.build import build_search
from dreamteam.personas import load_library
from dreamteam.propose.overlap import Arrivals, waits_on_network
from dreamteam.records import Status, TrialResult
from dreamteam.store import RunStore
from dreamteam.tasks import load_task
from dreamteam.tasks.data import DataPaths, resolve_data
from hostile.candidates import at_train_start
from test_search import FakeExecutor

TASK = load_task("shakespeare")
BASE = TASK.baseline_files()


def _jobs(n: int, broken: frozenset[int] = frozenset()) -> list[Job]:
    """n jobs; those in `broken` fail the static checks (a syntax error)."""
    bad = {**BASE, "train.py": BASE["train.py"] + "\ndef (\n"}
    return [Job(f"c{i}", dict(bad if i in broken else BASE), "smoke", 1337 + i) for i in range(n)]


def _ok(job: Job, loss: float = 5.0) -> TrialResult:
    return TrialResult(Status.OK, "", job.seed, job.fidelity, 40, val_loss=loss)


def _arriving(jobs: list[Job], log: list[str], pause: float = 0.0) -> Iterator[Job]:
    """The jobs one at a time, as proposals arrive; each pull is logged."""
    for job in jobs:
        time.sleep(pause)
        log.append(f"pull {job.candidate}")
        yield job


# -- the local executor -------------------------------------------------------------------
class _FakeTrials:
    """Stands in for run_trial: records the device and how many trials run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.active: set[str] = set()
        self.trained = 0

    def __call__(self, task, files, data, fidelity, seed, work, budget, isolation, **kw):
        assert kw["checked"], "the executor checks the files itself, on its caller's thread"
        with self.lock:
            self.running += 1
            self.trained += 1
            self.most = max(self.most, self.running)
            gpu = kw["device"] if kw["device"].startswith("cuda") else None
            assert gpu not in self.active, "two trials were given the same GPU"
            if gpu:
                self.active.add(gpu)
        time.sleep(random.random() * 0.01)
        with self.lock:
            self.running -= 1
            self.active.discard(kw["device"])
        return TrialResult(Status.OK, "", seed, fidelity, 40, val_loss=float(seed))


def _local(tmp_path: Path, workers: int, device: str = "cpu") -> LocalExecutor:
    return LocalExecutor(
        TASK, DataPaths(tmp_path), probe_isolation(), TrialBudget(), tmp_path, workers, device
    )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 12), workers=st.integers(1, 3), data=st.data())
def test_local_executor_yields_every_arriving_job_exactly_once(
    n: int, workers: int, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broken = frozenset(data.draw(st.sets(st.integers(0, max(n - 1, 0)))) if n else ())
    fake = _FakeTrials()
    tmp = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dreamteam.execute.local.run_trial", fake)
        jobs = _jobs(n, broken)
        out = list(_local(tmp, workers).run(_arriving(jobs, [])))
    assert Counter(j.candidate for j, _ in out) == Counter(j.candidate for j in jobs)
    assert all(r.seed == j.seed for j, r in out)
    invalid = {j.candidate for j, r in out if r.status is Status.INVALID}
    assert invalid == {f"c{i}" for i in broken}  # checked before a worker, never trained
    assert fake.trained == n - len(broken) and fake.most <= workers


def test_local_executor_pulls_a_job_only_when_a_worker_is_free(tmp_path: Path) -> None:
    log: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dreamteam.execute.local.run_trial", _FakeTrials())
        for job, _ in _local(tmp_path, 1).run(_arriving(_jobs(3), log)):
            log.append(f"done {job.candidate}")
    assert log == ["pull c0", "done c0", "pull c1", "done c1", "pull c2", "done c2"]


def test_workers_spread_over_gpus_and_never_share_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert worker_devices("cuda", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda:1", 2) == ["cuda:1", "cuda:1"]
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]
    fake = _FakeTrials()
    monkeypatch.setattr("dreamteam.execute.local.run_trial", fake)
    out = list(_local(tmp_path, 2, "cuda").run(_jobs(8)))
    assert len(out) == 8 and fake.most <= 2  # the fake asserts no GPU is shared


# -- overlapping the agents' calls ----------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(
    delays=st.lists(st.floats(0, 0.01), min_size=0, max_size=8),
    concurrency=st.integers(1, 4),
)
def test_answers_are_recorded_in_the_order_asked(delays: list[float], concurrency: int) -> None:
    caller = threading.get_ident()
    threads: list[int] = []

    def call(i: int, pause: float):
        def run() -> int:
            threads.append(threading.get_ident())
            time.sleep(pause)
            return i

        return run

    order: list[int] = []
    arrivals = Arrivals(
        [call(i, d) for i, d in enumerate(delays)],
        lambda i, answer: order.append(i) or answer * 10,
        concurrency,
        then=lambda: [-1],
    )
    assert list(arrivals) == [i * 10 for i in range(len(delays))] + [-1]
    assert order == list(range(len(delays)))
    if concurrency == 1:
        assert set(threads) <= {caller}  # in line: no thread, no overlap


class _SlowAgent:
    """Answers each persona with its own learning rate after a delay that grows down the team
    (so answers come back in reverse order), or up it with `later_last`; euler's code is
    archimedes' (a duplicate)."""

    LR: ClassVar[dict[str, str]] = {
        "archimedes": "2e-3",
        "aristotle": "1e-3",
        "euler": "2e-3",
        "gauss": "5e-4",
    }

    def __init__(self, delay: float = 0.03, later_last: bool = False) -> None:
        self.delay, self.later_last = delay, later_last
        self.seeds: dict[str, int] = {}
        self.asked: list[str] = []
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return "openai:slow"  # stands in for a remote model: its calls get threads

    def propose(self, request):
        with self.lock:
            self.seeds[request.persona] = request.seed
            self.asked.append(request.persona)
        order = list(self.LR).index(request.persona)
        time.sleep(self.delay * (order + 1 if self.later_last else len(self.LR) - order))
        code = BASE["train.py"].replace("learning_rate = 3e-4", f"learning_rate = {self.LR[request.persona]}")  # fmt: skip
        return AgentResponse(text=f"```python\ntrain_mps.py\n{code}```\n", model="slow")


def _run_with(tmp_path: Path, name: str, agent, executor, **overrides) -> RunStore:
    config = RunConfig(
        generations=1,
        personas=tuple(_SlowAgent.LR),
        fidelity="smoke",
        repair=0,
        **overrides,
    )
    team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)
    store = RunStore(tmp_path / name)
    store.create_run(name, "shakespeare", {}, [])
    build_search(
        config, store, task=TASK, library=load_library(), agents=team, executor=executor
    ).run()
    return store


def test_concurrent_proposals_match_the_sequential_ones(tmp_path: Path) -> None:
    stores, agents, executors = {}, {}, {}
    for concurrency in (1, 4):
        agents[concurrency], executors[concurrency] = _SlowAgent(), FakeExecutor()
        stores[concurrency] = _run_with(
            tmp_path,
            f"c{concurrency}",
            agents[concurrency],
            executors[concurrency],
            agent_concurrency=concurrency,
        )

    def rows(store: RunStore):
        return [
            (c.id, c.persona, c.kind, c.status, c.reason, c.code_hash, c.parent)
            for c in store.candidates()
        ]

    assert rows(stores[4]) == rows(stores[1])
    kinds = [c.kind for c in stores[4].candidates(1)]
    assert kinds == ["proposal", "proposal", "duplicate", "proposal"]  # euler repeats archimedes
    assert agents[4].seeds == agents[1].seeds
    assert executors[4].calls == executors[1].calls


def test_training_runs_while_the_last_answer_is_still_coming(tmp_path: Path) -> None:
    gauss_asked, gauss_answered, first_trained = (threading.Event() for _ in range(3))

    class LastIsSlow(_SlowAgent):
        def propose(self, request):
            if request.persona == "gauss":  # answers only once the first trial has run
                gauss_asked.set()
                first_trained.wait(timeout=10)
                gauss_answered.set()
            return super().propose(request)

    class Watching(FakeExecutor):
        overlapped: bool | None = None

        def _score(self, job: Job) -> TrialResult:
            if job.candidate.startswith("g1-") and self.overlapped is None:
                gauss_asked.wait(timeout=10)  # in line (no overlap) it never comes
                self.overlapped = gauss_asked.is_set() and not gauss_answered.is_set()
                first_trained.set()
            return super()._score(job)

    executor = Watching()
    _run_with(tmp_path, "run", LastIsSlow(delay=0.0), executor, agent_concurrency=4)
    assert executor.overlapped is True


def test_no_result_is_stored_while_proposals_are_still_being_recorded(tmp_path: Path) -> None:
    seen: list[int] = []
    store_add = RunStore.add_candidate

    def spy(self: RunStore, c) -> None:
        if c.generation == 1:
            seen.append(len([t for t in self.trials() if t.candidate.startswith("g1-")]))
        store_add(self, c)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunStore, "add_candidate", spy)
        agent = _SlowAgent(later_last=True)  # trials finish while answers still come
        _run_with(tmp_path, "run", agent, FakeExecutor(), agent_concurrency=4)
    assert seen == [0, 0, 0, 0]


def test_in_process_agents_are_asked_in_line(tmp_path: Path) -> None:
    class Local(_SlowAgent):
        threads: ClassVar[set[int]] = set()

        @property
        def name(self) -> str:
            return "offline"

        def propose(self, request):
            self.threads.add(threading.get_ident())
            return super().propose(request)

    _run_with(tmp_path, "run", Local(delay=0.0), FakeExecutor(), agent_concurrency=4)
    assert Local.threads == {threading.get_ident()}


def test_only_agents_that_wait_on_a_server_get_threads(tmp_path: Path) -> None:
    from dreamteam.agents import ReplayAgent
    from dreamteam.agents.offline import OfflineAgent

    (tmp_path / "c.jsonl").write_text("")
    assert not waits_on_network(OfflineAgent())
    assert not waits_on_network(ReplayAgent(tmp_path / "c.jsonl"))
    assert not waits_on_network(_Scripted())  # names no provider: in line, to be safe
    assert waits_on_network(_SlowAgent())
    team = build_team(
        parse_model_map("openai-compatible:m@http://127.0.0.1:9/v1"), Credentials.from_env({})
    )
    assert all(waits_on_network(a) for a in team.agents())
    team.close()


# -- configuration ---------------------------------------------------------------------------
def test_executor_settings_are_checked() -> None:
    config = load_run_config(None, {"executor": "ray", "address": "auto", "agent_concurrency": 8})
    assert (config.executor, config.address, config.agent_concurrency) == ("ray", "auto", 8)
    with pytest.raises(ConfigError, match="add --executor ray"):
        load_run_config(None, {"address": "auto"})
    with pytest.raises(ConfigError, match="--agent-concurrency must be"):
        load_run_config(None, {"agent_concurrency": 0})
    with pytest.raises(ConfigError, match="use local or ray"):
        load_run_config(None, {"executor": "dask"})


# -- the Ray executor -----------------------------------------------------------------------
def test_ray_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dreamteam.execute.ray import RayExecutor

    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'dreamteam\[ray\]'"):
        RayExecutor(TASK, DataPaths(tmp_path), TrialBudget())


def test_a_node_finds_its_data_or_says_where_to_put_it(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dreamteam.execute.ray import _node_data

    monkeypatch.delenv("DREAMTEAM_DATA_MIRROR", raising=False)
    monkeypatch.setenv("DREAMTEAM_HOME", str(tmp_path / "home"))
    _node_data.cache_clear()
    assert _node_data(mirror) == resolve_data(mirror=mirror)  # the driver's copy, seen here
    _node_data.cache_clear()
    with pytest.raises(DataError, match="DREAMTEAM_DATA_MIRROR there"):
        _node_data(tmp_path / "nowhere")
    _node_data.cache_clear()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def _ray(tmp_path: Path, trial_fn, workers: int = 2):
    from dreamteam.execute.ray import RayExecutor

    budget = TrialBudget(threads=1)
    return RayExecutor(TASK, DataPaths(tmp_path), budget, workers, trial_fn=trial_fn)


def test_ray_streams_every_arriving_job_once_and_keeps_weights(
    ray_local: object, tmp_path: Path
) -> None:
    def fake(task, job, data_root, budget, device):
        time.sleep(random.random() * 0.05)
        kept = b"weights of " + job.candidate.encode() if job.keep_checkpoint else None
        return TrialResult(Status.OK, "", job.seed, job.fidelity, 40, val_loss=1.0), kept

    jobs = _jobs(6)
    jobs[2] = Job("keeper", dict(BASE), "smoke", 7, keep_checkpoint=tmp_path / "k" / "ckpt.pt")
    out = list(_ray(tmp_path, fake).run(_arriving(jobs, [], pause=0.02)))
    assert Counter(j.candidate for j, _ in out) == Counter(j.candidate for j in jobs)
    assert all(r.ok and r.seed == j.seed for j, r in out)
    assert (tmp_path / "k" / "ckpt.pt").read_bytes() == b"weights of keeper"


def test_a_lost_worker_is_retried_once_then_recorded_as_crashed(
    ray_local: object, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def dies_first_time_for_c0_always_for_c1(task, job, data_root, budget, device):
        mark = Path(str(attempts)) / job.candidate
        mark.mkdir(exist_ok=True)
        (mark / uuid.uuid4().hex).touch()
        if job.candidate == "c1" or len(list(mark.iterdir())) == 1:
            os._exit(1)  # the worker process dies mid-task
        return TrialResult(Status.OK, "", job.seed, job.fidelity, 40, val_loss=2.0), None

    out = dict(
        (j.candidate, r) for j, r in _ray(tmp_path, dies_first_time_for_c0_always_for_c1).run(_jobs(2))
    )  # fmt: skip
    assert out["c0"].ok and len(list((attempts / "c0").iterdir())) == 2
    assert out["c1"].status is Status.CRASHED and out["c1"].reason.startswith("worker lost:")
    assert len(list((attempts / "c1").iterdir())) == 2  # tried once more, never more


def test_a_harness_fault_on_a_node_reaches_the_user_as_itself(
    ray_local: object, tmp_path: Path
) -> None:
    def no_data(task, job, data_root, budget, device):
        raise DataError("no data set on this node: set DREAMTEAM_DATA_MIRROR there")

    with pytest.raises(DataError, match="no data set on this node"):
        list(_ray(tmp_path, no_data).run(_jobs(1)))


class _Scripted:
    """One fixed answer per persona: archimedes trains fine, aristotle crashes at start."""

    def __init__(self) -> None:
        good = BASE["train.py"].replace("learning_rate = 3e-4", "learning_rate = 2e-3")
        bad = at_train_start(BASE, 'raise ValueError("deliberate crash")')["train.py"]
        self.answers = {"archimedes": good, "aristotle": bad}

    @property
    def name(self) -> str:
        return "scripted"

    def propose(self, request):
        code = self.answers[request.persona]
        return AgentResponse(text=f"```python\ntrain_mps.py\n{code}```\n", model="scripted")


@pytest.mark.slow
def test_a_generation_on_ray_gives_the_local_executors_statuses(
    ray_local: object, tmp_path: Path, mirror: Path
) -> None:
    from dreamteam.execute.ray import RayExecutor

    data = resolve_data(mirror=mirror)
    budget = TrialBudget(threads=cpu_threads(2))
    overrides = dict(
        personas=("archimedes", "aristotle"),
        screen_fidelity="smoke",
        max_promoted=0,  # screening only: the statuses are what is compared
        generations=1,
        fidelity="smoke",
        repair=0,
    )

    def statuses(name: str, executor) -> tuple[list, list]:
        config = RunConfig(**overrides)  # type: ignore[arg-type]
        agent = _Scripted()
        team = build_team(parse_model_map("offline"), Credentials.from_env({}), offline=lambda: agent)  # fmt: skip
        store = RunStore(tmp_path / name)
        store.create_run(name, "shakespeare", {}, [])
        build_search(
            config, store, task=TASK, library=load_library(), agents=team, executor=executor
        ).run()
        cands = [(c.id, c.kind, c.status) for c in store.candidates()]
        trials = sorted((t.candidate, t.fidelity, t.seed, str(t.status)) for t in store.trials())
        return cands, trials

    local = LocalExecutor(TASK, data, probe_isolation(), budget, tmp_path / "work", 2)
    on_ray = RayExecutor(TASK, data, budget, workers=2)
    cands, trials = statuses("local", local)
    assert statuses("ray", on_ray) == (cands, trials)
    assert dict((c, s) for c, _, s in cands) == {
        "g0-baseline": "ok",
        "g1-archimedes": "ok",
        "g1-aristotle": "crashed",
    }
