"""What transformers' ``generate`` lacks for OpenAI sampling: presence/frequency penalties,
JSON-constrained decoding (xgrammar, compiled per loaded tokenizer), each step's scores for
``logprobs``.

transformers has top-k, min-p and CTRL's ``repetition_penalty`` built in; OpenAI's additive
penalties count only the answer's tokens, not the prompt's. xgrammar (maintained, CPU wheels,
a transformers ``LogitsProcessor`` of its own) compiles a JSON schema against the tokenizer's
vocabulary and masks every token that would leave the grammar.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.convert_slow_tokenizer import bytes_to_unicode

from llmux.engines.base import LoggedPiece, SamplingParams
from llmux.engines.logprobs import token_logprob
from llmux.engines.transformers_stream import Detokenizer
from llmux.protocol.errors import InvalidRequest

_BYTE_OF = {char: byte for byte, char in bytes_to_unicode().items()}  # type: ignore[no-untyped-call]  # transformers leaves it unannotated


def token_bytes(tokenizer: Any, token: int) -> bytes:
    """A token's exact bytes (what ``logprobs`` report): byte-level BPE vocabularies (Qwen,
    gpt-oss) spell each byte as one character; other tokens (specials, SentencePiece) as their
    decoded text."""
    spelled = tokenizer.convert_ids_to_tokens(token)
    if isinstance(spelled, str) and all(c in _BYTE_OF for c in spelled):
        return bytes(_BYTE_OF[c] for c in spelled)
    return str(tokenizer.decode([token], skip_special_tokens=False)).encode()


class OpenAIPenalties(LogitsProcessor):
    """``logit[t] -= presence · [count(t) > 0] + frequency · count(t)`` over generated tokens."""

    def __init__(self, prompt_tokens: int, presence: float, frequency: float) -> None:
        self.prompt_tokens = prompt_tokens
        self.presence = presence
        self.frequency = frequency

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_tokens :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.presence * (counts > 0).to(scores.dtype) - self.frequency * counts  # type: ignore[return-value]  # a FloatTensor


class StepScores(LogitsProcessor):
    """Keeps each step's scores (after penalties, before temperature and truncation: custom
    processors run there) so that a streamed token can be given its log probability."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(scores[0].detach().float().cpu())
        return scores


class JsonGrammars:
    """One xgrammar compiler per loaded tokenizer (built on first use, with its cache)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._compiler: Any = None

    def processor(self, schema: str) -> LogitsProcessor:
        import xgrammar  # heavy (its own runtime); only requests with a response_format need it
        from xgrammar.contrib.hf import LogitsProcessor as GrammarProcessor

        if self._compiler is None:
            info = xgrammar.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size)
            self._compiler = xgrammar.GrammarCompiler(info)
        try:
            # Compact JSON: free whitespace lets a weak model pad forever inside the grammar.
            compiled = self._compiler.compile_json_schema(schema, strict_mode=True, any_whitespace=False)
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError on schemas it cannot map
            raise InvalidRequest(
                f"This JSON schema cannot be enforced: {exc}", param="response_format.json_schema.schema"
            ) from None
        return GrammarProcessor(compiled)


def logits_processors(
    params: SamplingParams, prompt_tokens: int, grammars: JsonGrammars, scores: StepScores | None = None
) -> list[LogitsProcessor]:
    out: list[LogitsProcessor] = [scores] if scores is not None else []
    if params.presence_penalty or params.frequency_penalty:
        out.append(OpenAIPenalties(prompt_tokens, params.presence_penalty or 0.0, params.frequency_penalty or 0.0))
    if params.json_schema is not None:
        out.append(grammars.processor(params.json_schema))
    return out


def generate_kwargs(
    params: SamplingParams,
    budget: int,
    grammars: JsonGrammars | None,
    prompt_tokens: int = 0,
    scores: StepScores | None = None,
) -> dict[str, Any]:
    """``generate``'s keywords for a request: None leaves the model's generation config alone."""
    kwargs: dict[str, Any] = {"max_new_tokens": budget}
    if params.temperature is not None:
        if params.temperature <= 0:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature)
    sampling = kwargs.get("do_sample", True)
    if params.top_p is not None and sampling:
        kwargs["top_p"] = params.top_p
    if params.top_k is not None and sampling:
        kwargs["top_k"] = params.top_k
    if params.min_p is not None and sampling:
        kwargs["min_p"] = params.min_p
    if params.repetition_penalty is not None:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if grammars is not None:
        processors = logits_processors(params, prompt_tokens, grammars, scores)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
    return kwargs


class SequenceSampler:
    """One batched sequence's sampling: the logits processors ``generate`` would build for it
    (the model's generation config with the request's overrides, custom processors merged in
    where ``generate`` merges them), and its own random generator, so a sequence's choice never
    depends on what else runs in the batch."""

    def __init__(self, model: Any, config: Any, prompt: list[int], custom: list[LogitsProcessor], seed: int | None):
        self.do_sample = bool(config.do_sample)
        self.processors = model._get_logits_processor(
            generation_config=config,
            input_ids_seq_length=len(prompt),
            logits_processor=LogitsProcessorList(custom),
            device=model.device,
        )
        self.ids = list(prompt)
        self.generator = torch.Generator(device=model.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token from this sequence's last logits (shape ``(vocab,)``)."""
        scores = logits[None].float()
        if self.processors:
            ids = torch.tensor([self.ids], dtype=torch.long, device=scores.device)
            scores = self.processors(ids, scores)
        if self.do_sample:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs[0], 1, generator=self.generator))
        else:
            token = int(scores[0].argmax())
        self.ids.append(token)
        return token


@dataclass
class Start:
    """What the engine makes of a job before the batched path runs it: its prompt ids, budget and
    sampler, and how its tokens become pieces (``piece(token)``: text, or a ``LoggedPiece``)."""

    ids: list[int]
    budget: int
    sampler: SequenceSampler
    piece: Callable[[int], str | LoggedPiece]


def sequence_start(
    model: Any, tokenizer: Any, grammars: JsonGrammars | None, ids: list[int], params: SamplingParams, budget: int
) -> Start:
    """The sampling ``generate`` would do for this prompt, one sequence at a time."""
    if not ids:
        raise InvalidRequest("The prompt is empty.", param="messages")
    scores = StepScores() if params.logprobs is not None else None
    kwargs = generate_kwargs(params, budget, grammars, len(ids), scores)
    custom = list(kwargs.pop("logits_processor", []))
    config = copy.deepcopy(model.generation_config)
    config.update(**kwargs)
    detok = Detokenizer(tokenizer)

    def piece(token: int) -> str | LoggedPiece:
        text = detok.push(token)
        if scores is None:
            return text
        top = params.logprobs or 0
        return LoggedPiece(
            text, token_logprob(scores.steps[-1].numpy(), token, top, lambda t: token_bytes(tokenizer, t))
        )

    return Start(ids, budget, SequenceSampler(model, config, ids, custom, params.seed), piece)
