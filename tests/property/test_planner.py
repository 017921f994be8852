"""Properties of the eviction planner (LLMUX-VRAM-002…005), for any resident set and budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmux.registry import ModelType
from llmux.residency.planner import Infeasible, Plan, Resident, Target, plan, used_gb

TYPES = st.sampled_from(list(ModelType))
CAPPED = (ModelType.LLM, ModelType.TTS)
"""One resident at a time (rule 3); ASR and embedding models have no cap."""
SIZES = st.floats(min_value=0.25, max_value=20, allow_nan=False).map(lambda x: round(x, 2))


FIXED = [ModelType.LLM, ModelType.TTS, ModelType.ASR]
ORDERS = st.integers(0, len(FIXED)).map(lambda at: tuple(FIXED[:at] + [ModelType.EMBEDDING] + FIXED[at:]))
"""Every eviction order a models.yaml may set: LLM < TTS < ASR fixed, embedding anywhere."""


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Target, list[Resident], float]:
    order = draw(ORDERS)
    budget = draw(st.floats(min_value=1, max_value=32).map(lambda x: round(x, 1)))
    residents: list[Resident] = []
    used = 0.0
    for i in range(draw(st.integers(0, 5))):
        kind = draw(TYPES)
        # The resident set itself obeys the invariants the controller maintains.
        if kind in (ModelType.LLM, ModelType.TTS) and any(r.type is kind for r in residents):
            continue
        size = draw(SIZES)
        if used + size > budget:
            continue
        used += size
        residents.append(
            Resident(f"{kind.value}{i}", kind, size, busy=draw(st.booleans()), last_used=draw(st.floats(0, 100)), pinned=draw(st.booleans()) and i % 3 == 0, priority=order.index(kind))
        )
    target = Target("target", draw(TYPES), draw(SIZES))
    return target, residents, budget


def after(decision: Plan, target: Target, residents: list[Resident]) -> list[Resident]:
    kept = [r for r in residents if r.id not in decision.evict]
    return [*kept, Resident(target.id, target.type, target.footprint_gb)]


@settings(max_examples=2000)
@given(scenarios())
def test_a_plan_fits_the_budget_and_keeps_one_llm_and_one_tts(s: tuple[Target, list[Resident], float]) -> None:
    target, residents, budget = s
    decision = plan(target, residents, budget)
    if isinstance(decision, Infeasible):
        return
    final = after(decision, target, residents)
    assert used_gb(final) <= budget + 1e-6
    for kind in (ModelType.LLM, ModelType.TTS):
        assert sum(r.type is kind for r in final) <= 1
    assert len(set(decision.evict)) == len(decision.evict)
    assert all(not r.pinned for r in residents if r.id in decision.evict)


@settings(max_examples=2000)
@given(scenarios())
def test_load_alongside_when_it_fits(s: tuple[Target, list[Resident], float]) -> None:
    target, residents, budget = s
    same_kind = [r for r in residents if r.type is target.type and target.type in CAPPED]
    if used_gb(residents) - used_gb(same_kind) + target.footprint_gb > budget or any(r.pinned for r in same_kind):
        return
    decision = plan(target, residents, budget)
    assert isinstance(decision, Plan)
    assert set(decision.evict) == {r.id for r in same_kind}


@settings(max_examples=2000)
@given(scenarios())
def test_only_as_many_as_needed_and_lowest_priority_first(s: tuple[Target, list[Resident], float]) -> None:
    target, residents, budget = s
    decision = plan(target, residents, budget)
    if isinstance(decision, Infeasible):
        return
    room = [v for v in decision.evict if decision.reason[v] == "make_room"]
    by_id = {r.id: r for r in residents}
    if room:
        # Minimal: keeping the last victim back would not have fitted.
        without_last = [r for r in residents if r.id not in decision.evict or r.id == room[-1]]
        assert used_gb(without_last) + target.footprint_gb > budget + 1e-9
    kept = [r for r in residents if r.id not in decision.evict]
    for victim in room:
        for survivor in kept:
            # Never a higher-priority model while a lower-priority one could go instead.
            if not survivor.pinned:
                assert by_id[victim].rank <= survivor.rank


@settings(max_examples=500)
@given(scenarios())
def test_refuses_only_what_cannot_fit(s: tuple[Target, list[Resident], float]) -> None:
    target, residents, budget = s
    decision = plan(target, residents, budget)
    if not isinstance(decision, Infeasible):
        return
    pinned = [r for r in residents if r.pinned]
    pinned_same_kind = [r for r in pinned if r.type is target.type and r.type in CAPPED]
    assert target.footprint_gb > budget or pinned_same_kind or used_gb(pinned) + target.footprint_gb > budget
    assert decision.message


def test_resident_target_needs_nothing() -> None:
    r = Resident("a", ModelType.ASR, 4)
    assert plan(Target("a", ModelType.ASR, 4), [r], 16) == Plan((), {})


def test_larger_than_budget_is_refused_with_the_numbers() -> None:
    decision = plan(Target("big", ModelType.LLM, 20), [], 16)
    assert isinstance(decision, Infeasible)
    assert "20 GB" in decision.message and "16 GB" in decision.message


@settings(max_examples=1000)
@given(scenarios())
def test_asr_and_embedding_models_are_never_replaced_only_evicted_for_room(
    s: tuple[Target, list[Resident], float],
) -> None:
    target, residents, budget = s
    decision = plan(target, residents, budget)
    if isinstance(decision, Infeasible):
        return
    by_id = {r.id: r for r in residents}
    for victim in decision.evict:
        if by_id[victim].type not in CAPPED:
            assert decision.reason[victim] == "make_room"


@given(ORDERS, SIZES, SIZES)
def test_the_configured_order_decides_between_an_embedding_and_a_tts_model(
    order: tuple[ModelType, ...], a: float, b: float
) -> None:
    residents = [Resident("emb", ModelType.EMBEDDING, a, priority=order.index(ModelType.EMBEDDING)),
                 Resident("tts", ModelType.TTS, b, priority=order.index(ModelType.TTS))]
    # Room for the target needs exactly one of the two gone, whichever it is.
    budget = a + b + 0.1
    decision = plan(Target("asr", ModelType.ASR, max(a, b)), residents, budget)
    assert isinstance(decision, Plan)
    first = "emb" if order.index(ModelType.EMBEDDING) < order.index(ModelType.TTS) else "tts"
    assert decision.evict[0] == first


def test_the_default_order_evicts_embeddings_after_the_llm_and_before_speech() -> None:
    from llmux.registry.config import DEFAULT_EVICTION_ORDER

    assert DEFAULT_EVICTION_ORDER == (ModelType.LLM, ModelType.EMBEDDING, ModelType.TTS, ModelType.ASR)
    residents = [Resident(t.value, t, 2.0) for t in ModelType]
    decision = plan(Target("big", ModelType.ASR, 6.0), residents, 8.0)
    assert isinstance(decision, Plan) and decision.evict == ("llm", "embedding", "tts")
