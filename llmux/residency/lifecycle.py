"""The lifecycle of one physical model, as a python-statemachine chart.

    unloaded --load--> loading --loaded--> ready --acquire--> serving
    loading --load_failed--> unloaded          serving --release--> ready (last lease)
    ready --evict--> evicting --evicted--> unloaded
                     evicting --park--> parked --unpark--> unparking --loaded--> ready
                     parked --drop--> unloaded       unparking --load_failed--> unloaded

There is no transition from ``serving`` to ``evicting``: a model holding a lease cannot be
evicted, by construction. ``parked`` is the warm host-RAM tier (``host_ram_budget_gb``): the
weights left the device but stay loaded in host memory, so a later request un-parks them
(a copy back) instead of loading them cold. A parked model holds no VRAM and no lease, and
leaves only by an un-park (back through ``unparking`` to ``ready``) or a drop (host RAM needed). The machine is strict (unknown or impossible events raise) and has
no side effects; the controller performs loads and unloads and then reports them here.
``statecharts/model_lifecycle.md`` is generated from this class (``python -m llmux.residency.lifecycle``)
and a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any

from statemachine import State, StateMachine


class ModelLifecycle(StateMachine):
    """Lifecycle of one physical model; ``leases`` counts requests using it."""

    unloaded = State(initial=True)
    loading = State()
    ready = State()
    serving = State()
    evicting = State()
    parked = State()
    unparking = State()

    load = unloaded.to(loading)
    loaded = loading.to(ready) | unparking.to(ready)
    load_failed = loading.to(unloaded) | unparking.to(unloaded)
    acquire = ready.to(serving) | serving.to.itself(internal=True)
    release = serving.to.itself(cond="has_other_leases", internal=True) | serving.to(ready)
    evict = ready.to(evicting)
    evicted = evicting.to(unloaded)
    park = evicting.to(parked)
    unpark = parked.to(unparking)
    drop = parked.to(unloaded)

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        self.name = name
        self.leases = 0
        super().__init__(**kwargs)

    def has_other_leases(self) -> bool:
        # Guards run before actions: this sees the count before the decrement.
        return self.leases > 1

    def on_acquire(self) -> None:
        self.leases += 1

    def on_release(self) -> None:
        self.leases -= 1

    @property
    def state(self) -> str:
        """The current state's id (``"ready"``, ``"serving"``, ...)."""
        return str(self.current_state_value)

    @property
    def resident(self) -> bool:
        """Occupies (or is about to occupy, or still occupies) VRAM."""
        return self.state not in ("unloaded", "parked")

    @property
    def warm(self) -> bool:
        """Held in host RAM, off the device (counts against ``host_ram_budget_gb``)."""
        return self.state == "parked"


def mermaid() -> str:
    """The chart as a Markdown document with a Mermaid diagram."""
    diagram = f"{ModelLifecycle():mermaid}".strip()
    return (
        "# Model lifecycle\n\n"
        "Generated from `llmux/residency/lifecycle.py` by `python -m llmux.residency.lifecycle`;\n"
        "`tests/unit/test_lifecycle.py` fails when this file and the class disagree.\n\n"
        f"```mermaid\n{diagram}\n```\n"
    )


if __name__ == "__main__":
    print(mermaid(), end="")
