"""Slot admission of the batching engines (``engines.admission``), for any interleaving of
arrivals, withdrawals, admissions and finishes: no slot is leaked or shared, jobs start in
arrival order, at most ``slots`` run, and an exclusive (image) job runs alone."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmux.engines.admission import Admission


@dataclass(frozen=True)
class Job:
    n: int
    exclusive: bool


class AdmissionMachine(RuleBasedStateMachine):
    @rule(slots=st.integers(1, 5))
    @precondition(lambda self: not hasattr(self, "admission"))
    def start(self, slots: int) -> None:
        self.admission: Admission[Job] = Admission(slots, exclusive=lambda j: j.exclusive)
        self.arrived: list[Job] = []
        self.withdrawn: set[Job] = set()
        self.started: list[Job] = []
        self.running: dict[int, Job] = {}

    def ready(self) -> bool:
        return hasattr(self, "admission")

    @precondition(ready)
    @rule(exclusive=st.booleans())
    def arrive(self, exclusive: bool) -> None:
        job = Job(len(self.arrived), exclusive and len(self.arrived) % 3 == 0)
        self.arrived.append(job)
        self.admission.submit(job)

    @precondition(ready)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        waiting = [j for j in self.arrived if j not in self.withdrawn and j not in self.started]
        if not waiting:
            return
        job = data.draw(st.sampled_from(waiting))
        assert self.admission.withdraw(job)
        self.withdrawn.add(job)

    @precondition(ready)
    @rule(data=st.data())
    def withdraw_a_running_job_fails(self, data: st.DataObject) -> None:
        if self.running:
            assert not self.admission.withdraw(data.draw(st.sampled_from(sorted(self.running.values(), key=lambda j: j.n))))

    @precondition(ready)
    @rule(preferred=st.integers(0, 4))
    def admit(self, preferred: int) -> None:
        free = set(self.admission.free())
        for job, slot in self.admission.admit(lambda j, s: int(s == preferred)):
            assert slot in free, "a slot was handed out twice"
            if not job.exclusive and preferred in free:
                assert slot == preferred, "not the free slot with the longest cached prefix"
            free.discard(slot)
            self.running[slot] = job
            self.started.append(job)
        if self.admission.waiting and free:
            head = [j for j in self.arrived if j not in self.withdrawn][len(self.started)]
            alone = any(j.exclusive for j in self.running.values())
            assert alone or (head.exclusive and self.running), "a job waits although a slot is free"

    @precondition(ready)
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        if not self.running:
            return
        slot = data.draw(st.sampled_from(sorted(self.running)))
        assert self.admission.finish(slot) is self.running.pop(slot)

    @invariant()
    def bookkeeping_holds(self) -> None:
        if not self.ready():
            return
        a = self.admission
        assert a.running == len(self.running) <= a.slots
        assert sorted(a.free()) == sorted(set(range(a.slots)) - set(self.running)), "a slot leaked"
        expected = [j for j in self.arrived if j not in self.withdrawn]
        assert self.started == expected[: len(self.started)], "jobs started out of arrival order"
        assert a.waiting == len(expected) - len(self.started)
        if any(j.exclusive for j in self.running.values()):
            assert len(self.running) == 1, "an exclusive job ran beside another"


AdmissionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAdmission = AdmissionMachine.TestCase
