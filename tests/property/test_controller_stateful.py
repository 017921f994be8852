"""The residency controller under random traffic: requests, releases, cancellations, slow and
failing loads, loads that measure larger or smaller than estimated, loads that hang past their
timeout (and return late, or never), broken models and their reset, pins and admin unloads;
clients that go away at every await point — queued, just granted, or mid-request under a lease;
the switch policy holding swaps, and its timers firing when the test lets time pass; and (in
``ParkingMachine``) the warm host-RAM tier: evicted models parked, un-parked (or failing to),
declined by their runtime, reported larger than planned, and dropped to make host room.

Loads are gated by the test (no clock, no threads): a load starts, and a later rule decides
when it finishes and how; a load's timeout is a timer the test fires. After every step the
invariants must hold.

Size: ``LLMUX_STATEFUL_EXAMPLES`` runs (default 1000) of at most ``LLMUX_STATEFUL_STEPS`` steps
each (default 30); ``make stateful`` asks for 10,000-step runs. Hypothesis ends a run when its
choice buffer is full (8 KB: 470-800 of these steps) and has no setting for its size, so runs
longer than that get a buffer sized for them (``long_runs``). ``LLMUX_STATEFUL_REPORT`` names a
JSON file that gets the steps each run reached.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmux.protocol.errors import LlmuxError, ModelCannotFit, ModelLoadFailed, TooManyRequests
from llmux.protocol.events import FootprintChanged, LeaseChanged, PinChanged, Snapshot, StateChanged, WaitingChanged
from llmux.registry import ModelType, PhysicalModel, Registry
from llmux.registry.config import Limits
from llmux.residency.controller import ResidencyController
from llmux.residency.memory import measure
from llmux.residency.slots import Lease

BUDGET = 16.0
MAX_WAIT_S = 60.0
MODELS = {
    "llm-9": (ModelType.LLM, 9.0),
    "llm-13": (ModelType.LLM, 13.0),
    "llm-4": (ModelType.LLM, 4.0),
    "asr-4": (ModelType.ASR, 4.0),
    "asr-2": (ModelType.ASR, 2.0),
    "tts-2a": (ModelType.TTS, 2.0),
    "tts-2b": (ModelType.TTS, 2.0),
    "huge": (ModelType.LLM, 20.0),
    "emb-1": (ModelType.EMBEDDING, 1.0),
    "emb-3": (ModelType.EMBEDDING, 3.0),
}
ORDER = (ModelType.LLM, ModelType.TTS, ModelType.EMBEDDING, ModelType.ASR)
"""Not the default order: embeddings after TTS, so the config's order is what the controller obeys."""


def registry(host_ram_gb: float = 0.0) -> Registry:
    physical = {
        mid: PhysicalModel(type=kind, backend="transformers", weights=mid, vram_gb=gb, id=mid, load_backoff_s=20.0)
        for mid, (kind, gb) in MODELS.items()
    }
    limits = Limits(max_wait_s=MAX_WAIT_S)
    return Registry(
        BUDGET, Path("/nonexistent"), None, limits, physical, {}, host_ram_budget_gb=host_ram_gb, eviction_order=ORDER
    )


class GatedBackend:
    """Its load waits for the test to say how it ends: (ok, measured GB or None)."""

    def __init__(self, spec: PhysicalModel, park_factor: float | None = 1.0) -> None:
        self.spec = spec
        self.outcome: tuple[bool, float | None] = (True, None)
        self.loaded = False
        self.park_factor = park_factor
        """What ``park`` reports: the estimate times this, or None (the runtime declines)."""
        self.on_host = False
        self.peak: float | None = None
        """What ``peak_gb`` reports: the footprint it needed at most while serving."""

    def peak_gb(self) -> float | None:
        return self.peak

    def load(self) -> float | None:
        ok, measured = self.outcome
        if not ok:
            raise RuntimeError(f"{self.spec.id}: CUDA out of memory (simulated)")
        self.loaded = True
        return measured

    def unload(self) -> None:
        assert self.loaded
        self.loaded = self.on_host = False

    def park(self) -> float | None:
        assert self.loaded and not self.on_host
        if self.park_factor is None:
            return None
        self.on_host = True
        return self.spec.vram_gb * self.park_factor

    def unpark(self) -> float | None:
        assert self.loaded and self.on_host
        ok, measured = self.outcome
        if not ok:
            raise RuntimeError(f"{self.spec.id}: CUDA out of memory (simulated)")
        self.on_host = False
        return measured


class FakeTimer:
    """A ``call_later`` on the test's clock: it fires when a rule lets time pass."""

    def __init__(self, when: float, callback: Any) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Session:
    """A request that holds its lease while it runs (a stream), until ``done`` resolves."""

    def __init__(self, machine: ControllerMachine, model: str) -> None:
        self.model = model
        self.done: asyncio.Future[None] = machine.loop.create_future()
        self.running = False
        self.task = machine.loop.create_task(self.run(machine.controller))

    async def run(self, controller: ResidencyController) -> None:
        async with controller.lease(self.model):
            self.running = True
            try:
                await self.done
            finally:
                self.running = False


MODEL_IDS = st.sampled_from(sorted(MODELS))
STEPS = int(os.environ.get("LLMUX_STATEFUL_STEPS", "30"))
REPORT = os.environ.get("LLMUX_STATEFUL_REPORT")
STEPS_RUN: list[int] = []


def long_runs(steps: int) -> None:
    """Room in Hypothesis's choice buffer for ``steps`` steps (a step draws well under 64
    choices). Internal names, checked: if Hypothesis renames them this fails loudly rather
    than quietly running short runs again."""
    import hypothesis.internal.conjecture.engine as engine
    import hypothesis.stateful as stateful

    assert isinstance(engine.BUFFER_SIZE, int) and isinstance(stateful.BUFFER_SIZE, int)
    engine.BUFFER_SIZE = stateful.BUFFER_SIZE = max(engine.BUFFER_SIZE, steps * 64)  # type: ignore[misc]


if STEPS > 400:  # only ``make stateful``: the suite's short runs keep Hypothesis's defaults
    long_runs(STEPS)


class ControllerMachine(RuleBasedStateMachine):
    HOST_RAM_GB = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.gate: asyncio.Future[None] | None = None
        self.loading: GatedBackend | None = None
        self.timer: asyncio.Future[None] | None = None
        self.hung: list[tuple[GatedBackend, asyncio.Future[None]]] = []
        self.backends: dict[str, GatedBackend] = {}
        self.timers: list[FakeTimer] = []
        self.park_factor: float | None = 1.0
        self.controller = ResidencyController(
            registry(self.HOST_RAM_GB), self._factory, offload=self._offload, clock=self._tick, sleep=self._sleep, timer=self._timer
        )
        for mid in MODELS:  # as if it had served a while: the policy has switch costs to weigh
            self.controller.costs.observe(mid, "load", 10.0)
            self.controller.costs.observe(mid, "unload", 1.0)
        self.sessions: list[Session] = []
        self.created: list[GatedBackend] = []
        self.now = 0.0
        self.waiting: list[asyncio.Task[Lease]] = []
        self.admin: list[asyncio.Task[None]] = []
        self.held: list[Lease] = []
        self.failures: list[BaseException] = []
        self.feed = self.controller.events.subscribe()  # what a dashboard would be told
        self.mirror: dict[str, dict[str, Any]] = {}
        self.last_seq = 0
        self.repinned: dict[str, int] = {}  # model -> the swap that was running when its pin changed
        self.steps = -1  # the invariants also run once before the first step
        structlog.configure(
            processors=[self._check_eviction, structlog.processors.KeyValueRenderer()], cache_logger_on_first_use=False
        )

    # ---- the test's side of the controller ------------------------------------------------

    def _tick(self) -> float:
        self.now += 1.0
        return self.now

    def _timer(self, delay: float, callback: Any) -> FakeTimer:
        self.timers.append(FakeTimer(self.now + delay, callback))
        return self.timers[-1]

    def fire_timers(self, until: float) -> None:
        self.timers = [t for t in self.timers if not t.cancelled]
        for t in [t for t in self.timers if t.when <= until]:
            self.timers.remove(t)
            self.now = max(self.now, t.when)
            self.loop.call_soon(t.callback)  # as call_later would: on the loop (``settle`` runs it)

    def on_loop(self, call: Any, *args: Any) -> None:
        """Call a controller method from the event loop, as the server does (it may start a swap)."""

        async def run() -> None:
            call(*args)

        self.loop.run_until_complete(run())

    def _live_waiters(self) -> list[Any]:
        return [w for w in self.controller._queue if not w.future.done()]

    def _factory(self, spec: PhysicalModel, _: Registry) -> GatedBackend:
        self.backends[spec.id] = GatedBackend(spec, self.park_factor)  # a new engine per load, as in production
        self.created.append(self.backends[spec.id])
        return self.backends[spec.id]

    def _sleep(self, _: float) -> asyncio.Future[None]:
        self.timer = self.loop.create_future()  # the load's timeout; fired by a rule
        return self.timer

    async def _offload(self, fn: Any, *args: Any) -> Any:
        if fn == self._factory:
            return fn(*args)
        if fn is measure:
            self.loading = args[0].__self__
            gate = self.gate = self.loop.create_future()
            await gate
            if self.gate is gate:
                self.gate, self.loading = None, None
        else:
            slot = self.controller._slots[fn.__self__.spec.id]
            if fn.__self__ is slot.engine:  # an eviction: no lease, in `evicting`
                assert slot.state == "evicting" and slot.leases == 0
                self.now += 0.5  # the simulated unload time
            else:  # a timed-out load that returned late: dropped, never served
                assert fn.__self__.loaded
        await asyncio.sleep(0)
        return fn(*args)

    def _check_eviction(self, _: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") in ("model.evicted", "model.parked") and event.get("reason") == "make_room":
            victim = ORDER.index(MODELS[event["model"]][0])
            for view in self.controller.status():
                if view.state in ("unloaded", "parked") or view.pinned or view.id == event["model"]:
                    continue
                # The victims were chosen when this swap began: a model unpinned since then was
                # pinned (so not a candidate) when they were.
                if self.repinned.get(view.id) == self.controller.swaps:
                    continue
                # Nothing of lower priority than the victim was left resident.
                assert ORDER.index(MODELS[view.id][0]) >= victim, (event, view)
        raise structlog.DropEvent

    def settle(self) -> None:
        async def spin() -> None:
            for _ in range(60):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())
        for task in [t for t in self.waiting if t.done()]:
            self.waiting.remove(task)
            if task.cancelled():
                continue
            error = task.exception()
            if error is None:
                self.held.append(task.result())
            else:
                assert isinstance(error, (ModelCannotFit, ModelLoadFailed, TooManyRequests)), repr(error)
                self.failures.append(error)
        for session in [s for s in self.sessions if s.task.done()]:
            self.sessions.remove(session)
            if not session.task.cancelled() and session.task.exception() is not None:
                error = session.task.exception()
                assert isinstance(error, (ModelCannotFit, ModelLoadFailed, TooManyRequests)), repr(error)
                self.failures.append(error)
        for task in [t for t in self.admin if t.done()]:
            self.admin.remove(task)
            assert task.exception() is None

    # ---- rules ----------------------------------------------------------------------------

    @rule(model=MODEL_IDS)
    def request(self, model: str) -> None:
        self.waiting.append(self.loop.create_task(self.controller.acquire(model)))
        self.settle()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        self.on_loop(self.controller.release, lease)
        self.settle()

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def client_goes_away(self, data: st.DataObject) -> None:
        self.waiting[data.draw(st.integers(0, len(self.waiting) - 1))].cancel()
        self.settle()

    @precondition(lambda self: self.gate is not None)
    @rule(ok=st.booleans(), factor=st.sampled_from([None, 0.5, 1.0, 1.3]), took=st.sampled_from([0.0, 8.0, 30.0]))
    def finish_load(self, ok: bool, factor: float | None, took: float) -> None:
        assert self.loading is not None and self.gate is not None
        self.now += took  # the simulated load time: the switch cost the policy measures
        estimate = self.loading.spec.vram_gb
        self.loading.outcome = (ok, None if factor is None else estimate * factor)
        self.gate.set_result(None)
        self.settle()

    @precondition(lambda self: self.gate is not None and self.timer is not None and not self.timer.done())
    @rule()
    def load_times_out(self) -> None:
        """The load hangs past its timeout: its waiters fail, its thread is left behind."""
        assert self.loading is not None and self.gate is not None and self.timer is not None
        self.hung.append((self.loading, self.gate))
        self.gate, self.loading = None, None
        self.timer.set_result(None)
        self.settle()

    @precondition(lambda self: self.hung)
    @rule(data=st.data(), ok=st.booleans())
    def hung_load_returns(self, data: st.DataObject, ok: bool) -> None:
        backend, gate = self.hung.pop(data.draw(st.integers(0, len(self.hung) - 1)))
        backend.outcome = (ok, None)
        gate.set_result(None)
        self.settle()

    @precondition(lambda self: any(not t.cancelled for t in self.timers))
    @rule()
    def time_passes(self) -> None:
        """Time reaches the switch policy's next decision: the held swap is decided again."""
        self.fire_timers(min(t.when for t in self.timers if not t.cancelled))
        self.settle()
        live = self._live_waiters()
        if live and self.controller._swap is None:
            # Never held past the staleness bound: a stale waiter's swap has started.
            assert self.now < live[0].since + self.controller.max_wait_s, (self.now, live[0])

    @rule(model=MODEL_IDS)
    def admin_reset(self, model: str) -> None:
        self.on_loop(self.controller.reset, model)
        self.settle()

    @rule(model=MODEL_IDS, spins=st.integers(0, 4))
    def client_leaves_after(self, model: str, spins: int) -> None:
        """A request cancelled after ``spins`` loop iterations: while queued, in the instant its
        lease is granted but before it resumes, or under the lease."""
        session = Session(self, model)

        async def spin() -> None:
            for _ in range(spins):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())
        session.task.cancel()
        self.sessions.append(session)
        self.settle()

    @rule(model=MODEL_IDS)
    def stream_starts(self, model: str) -> None:
        self.sessions.append(Session(self, model))
        self.settle()

    @precondition(lambda self: any(s.running for s in self.sessions))
    @rule(data=st.data(), disconnect=st.booleans())
    def stream_ends(self, data: st.DataObject, disconnect: bool) -> None:
        running = [s for s in self.sessions if s.running]
        session = running[data.draw(st.integers(0, len(running) - 1))]
        if disconnect:
            session.task.cancel()  # mid-stream
        else:
            session.done.set_result(None)
        self.settle()

    def _on_device(self) -> list[Any]:
        return [s for s in self.controller._slots.values() if s.engine is not None and s.state in ("ready", "serving")]

    @precondition(lambda self: self._on_device())
    @rule(data=st.data(), factor=st.sampled_from([1.2, 1.6, 3.0]))
    def serving_grows(self, data: st.DataObject, factor: float) -> None:
        """A long request's KV cache: the model's peak footprint exceeds its plan (noticed when
        its last lease is released; ×3 can exceed what fits next to the pinned models)."""
        slot = data.draw(st.sampled_from(self._on_device()))
        slot.engine.peak = slot.footprint_gb * factor

    @rule(model=st.sampled_from(["asr-4", "asr-2", "tts-2a"]), pinned=st.booleans())
    def pin(self, model: str, pinned: bool) -> None:
        if self.controller._swap is not None and self.controller._slots[model].pinned and not pinned:
            self.repinned[model] = self.controller.swaps
        self.controller.pin(model, pinned)

    @rule(model=MODEL_IDS)
    def admin_unload(self, model: str) -> None:
        self.admin.append(self.loop.create_task(self.controller.unload(model)))
        self.settle()

    # ---- invariants -----------------------------------------------------------------------

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    @invariant()
    def a_peak_is_never_forgotten(self) -> None:
        for slot in self.controller._slots.values():
            assert slot.footprint_gb >= slot.peak_gb - 1e-9

    @invariant()
    def within_budget(self) -> None:
        # A load that measured larger than estimated may overshoot until its correction,
        # which runs inside the same swap; outside a swap the budget always holds.
        if self.controller._swap is None:
            assert self.controller.used_gb <= BUDGET + 1e-6

    @invariant()
    def one_llm_one_tts(self) -> None:
        views = [v for v in self.controller.status() if v.state not in ("unloaded", "parked")]
        assert sum(v.type == "llm" for v in views) <= 1
        assert sum(v.type == "tts" for v in views) <= 1

    @invariant()
    def leased_models_are_serving_and_counted(self) -> None:
        counts: dict[str, int] = {}
        for lease in self.held:
            counts[lease.model] = counts.get(lease.model, 0) + 1
        for session in self.sessions:
            if session.running:
                counts[session.model] = counts.get(session.model, 0) + 1
        for view in self.controller.status():
            assert view.leases == counts.get(view.id, 0), view
            if view.leases:
                assert view.state == "serving"

    @invariant()
    def a_held_swap_is_decided_again_in_time(self) -> None:
        """Whoever waits while no swap runs is held by the policy, with a timer armed no later
        than the oldest waiter's ``max_wait_s``: no waiter is left without a next decision."""
        live = self._live_waiters()
        if not live or self.controller._swap is not None:
            return
        held = self.controller.held_until
        assert held is not None, live
        assert held <= live[0].since + self.controller.max_wait_s + 1e-9
        assert any(not t.cancelled and t.when <= held + 1e-9 for t in self.timers)

    @invariant()
    def the_event_feed_tells_the_state(self) -> None:
        """A reader that applies the feed's events to its snapshot sees what ``status()`` says:
        every state, lease count, pin, footprint and waiting count, with no ``seq`` skipped."""
        for event in self.feed.drain():
            if isinstance(event, Snapshot):
                assert event.seq >= self.last_seq
                self.mirror = {m.id: {"state": m.state, "leases": m.leases, "pinned": m.pinned,
                                      "vram_gb": m.vram_gb, "waiting": m.waiting} for m in event.models}
            else:
                assert event.seq == self.last_seq + 1, (event, self.last_seq)
                model = self.mirror.get(getattr(event, "model", ""), {})  # swaps name no one model
                if isinstance(event, StateChanged):
                    model["state"] = event.state
                elif isinstance(event, LeaseChanged):
                    model["leases"] = event.leases
                elif isinstance(event, PinChanged):
                    model["pinned"] = event.pinned
                elif isinstance(event, FootprintChanged):
                    model["vram_gb"] = event.vram_gb
                elif isinstance(event, WaitingChanged):
                    model["waiting"] = event.waiting
            self.last_seq = event.seq
        queued = [w.model for w in self.controller._queue]
        for view in self.controller.status():
            told = dict(self.mirror[view.id])
            # The controller tells waiting counts when it decides (end of each pass), so a count
            # the test read between passes may be stale by what that pass removes.
            assert told.pop("waiting") == queued.count(view.id) or self.controller._swap is not None
            assert told == {"state": view.state, "leases": view.leases, "pinned": view.pinned,
                            "vram_gb": view.vram_gb}, view.id

    @invariant()
    def never_loads_what_cannot_fit(self) -> None:
        assert self.controller._slots["huge"].state == "unloaded"

    def teardown(self) -> None:
        STEPS_RUN.append(self.steps)
        if REPORT:
            runs = sorted(STEPS_RUN)
            Path(REPORT).write_text(json.dumps({"runs": len(runs), "min_steps": runs[0], "max_steps": runs[-1],
                                                "median_steps": runs[len(runs) // 2], "total_steps": sum(runs)}))
        try:
            for lease in self.held:
                self.on_loop(self.controller.release, lease)
            self.held.clear()
            for _ in range(40):  # let every queued request and load run to its end
                if self.gate is not None:
                    assert self.loading is not None
                    self.loading.outcome = (True, None)
                    self.gate.set_result(None)
                for _, gate in self.hung:
                    gate.set_result(None)
                self.hung.clear()
                self.fire_timers(float("inf"))
                for session in self.sessions:
                    if session.running and not session.done.done():
                        session.done.set_result(None)
                self.settle()
                for lease in self.held:
                    self.on_loop(self.controller.release, lease)
                self.held.clear()
                idle = not any(not t.cancelled for t in self.timers)
                if not self.waiting and not self.admin and not self.sessions and self.gate is None and idle:
                    break
            assert not self.waiting and not self.sessions, "a request neither served nor failed"
            assert all(v.abandoned_loads == 0 for v in self.controller.status()), "a late load was kept"
            assert not any(b.loaded for b in self._orphans()), "a late load was never unloaded"
            assert self.controller.queue_depth == 0
            assert all(v.leases == 0 for v in self.controller.status()), "lease leaked"
            assert self.controller.used_gb <= BUDGET + 1e-6
            assert all(isinstance(f, LlmuxError) and f.message for f in self.failures)
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()
            structlog.reset_defaults()

    def _orphans(self) -> list[GatedBackend]:
        """Engines that hold weights but are no slot's engine (a late load not dropped)."""
        engines = {id(s.engine) for s in self.controller._slots.values()}
        return [b for b in self.created if id(b) not in engines]


ControllerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LLMUX_STATEFUL_EXAMPLES", "1000")),
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
)
test_controller_invariants = ControllerMachine.TestCase
test_controller_invariants = pytest.mark.slow(test_controller_invariants)


class ParkingMachine(ControllerMachine):
    """The same traffic with a warm tier that holds one 9 GB LLM plus small models, not the
    13 GB one: evictions park, later requests un-park, and parked models are dropped for room."""

    HOST_RAM_GB = 12.0

    @rule(factor=st.sampled_from([None, 0.5, 1.0, 1.4]))
    def runtime_parks_like(self, factor: float | None) -> None:
        """Engines made from now on report this much host RAM when parked (None: they decline)."""
        self.park_factor = factor

    @invariant()
    def host_ram_budget_holds(self) -> None:
        assert self.controller.host_used_gb <= self.HOST_RAM_GB + 1e-6

    @invariant()
    def parked_models_hold_no_vram_and_no_lease(self) -> None:
        views = self.controller.status()
        on_device = sum(v.vram_gb for v in views if v.state not in ("unloaded", "parked"))
        assert abs(self.controller.used_gb - on_device) < 1e-2
        for v in views:
            slot = self.controller._slots[v.id]
            if v.state == "parked":
                assert v.leases == 0 and v.host_gb > 0 and not slot.draining
                assert slot.engine is not None and slot.engine.loaded and slot.engine.on_host
            elif v.state != "unparking":  # the host copy is freed once the copy back is done
                assert v.host_gb == 0
        assert sum(v.type == "llm" and v.state == "serving" for v in views) <= 1

    @invariant()
    def unloaded_models_hold_nothing(self) -> None:
        for slot in self.controller._slots.values():
            if slot.state == "unloaded":
                assert slot.engine is None


ParkingMachine.TestCase.settings = ControllerMachine.TestCase.settings
test_controller_invariants_with_parking = pytest.mark.slow(ParkingMachine.TestCase)
