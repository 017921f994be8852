"""A Hugging Face checkpoint through transformers, as a text engine (LLMUX-RT-001).

The checkpoint's chat template is what ``template()`` hands the chat pipeline; ``generate``
tokenizes the rendered prompt (through the multimodal processor when images come with it),
runs ``model.generate`` in a helper thread and hands token ids over a queue, decoded to text
pieces. A stop criterion checks a halt flag every token, so a cancelled job stops within one.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import structlog
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    LogitsProcessorList,
    StoppingCriteriaList,
)

from llmux.engines.base import ChatTemplate, LoggedPiece, Prompted, SamplingParams, TextJob
from llmux.engines.devices import torch_device
from llmux.engines.images import to_pil
from llmux.engines.logprobs import token_logprob
from llmux.engines.text import Item, SerialTextEngine, completion_budget
from llmux.engines.torch_park import PeakMeter, park_module, unpark_module
from llmux.engines.transformers_prefix import PrefixCache
from llmux.engines.transformers_sampling import JsonGrammars, StepScores, logits_processors, token_bytes
from llmux.engines.transformers_stream import DONE as _DONE
from llmux.engines.transformers_stream import Halt as _Halt
from llmux.engines.transformers_stream import QueueStreamer as _QueueStreamer
from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import TransformersOptions
from llmux.residency.memory import measure

log = structlog.get_logger("llmux.engines")


class Detokenizer:
    """Token ids -> text deltas. Decodes a short window, never the whole output, and holds
    back a piece that ends inside a multi-byte character."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def push(self, token: int) -> str:
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before) :]


def _dtype(name: str, device: str) -> Any:
    if name == "auto":
        # Half precision on a CPU is slow or unsupported: float32 unless asked otherwise.
        return "auto" if device != "cpu" else torch.float32
    return getattr(torch, name)


class TransformersLLM(SerialTextEngine):
    def __init__(self, spec: PhysicalModel, registry: Registry, options: TransformersOptions) -> None:
        super().__init__(spec.id)
        self.spec = spec
        self.path = registry.weights_path(spec)
        self.options = options
        self.device = torch_device(options.device)
        self.model: Any = None
        self.processor: Any = None  # a tokenizer, or a multimodal processor for vision models
        self.tokenizer: Any = None
        self.context = 0
        """Tokens a prompt plus its completion may take, known once loaded (``/v1/models``)."""
        self._eos: set[int] = set()
        self._grammars: JsonGrammars | None = None
        self._prefix = PrefixCache()
        self._peak = PeakMeter(self.device)

    # ---- lifecycle ----------------------------------------------------------------------------

    def load(self) -> float | None:
        if not self.path.exists():
            raise ModelLoadFailed(f"weights not found: {self.path}")
        if self.options.threads:
            torch.set_num_threads(self.options.threads)  # process-wide: torch has one pool
        started = time.perf_counter()
        try:
            _, footprint = measure(self._open)
        except BaseException:
            self.unload()  # a failed load leaves nothing allocated
            raise
        self.context = self.options.max_context or self._model_context()
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = self.model.get_output_embeddings().weight.shape[0]
        self._grammars = JsonGrammars(self.tokenizer, int(vocab))
        self._peak.loaded(footprint)
        log.info(
            "model.weights_loaded",
            model=self.spec.id,
            device=self.device,
            context=self.context,
            seconds=round(time.perf_counter() - started, 3),
            gb=footprint,
        )
        return footprint

    def _open(self) -> None:
        if self.spec.vision:
            self.processor = AutoProcessor.from_pretrained(self.path)
            self.tokenizer = self.processor.tokenizer
            model_class: Any = AutoModelForImageTextToText
        else:
            self.processor = self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            model_class = AutoModelForCausalLM
        self.model = model_class.from_pretrained(
            self.path, dtype=_dtype(self.options.dtype, self.device), device_map=self.device
        ).eval()

    def _model_context(self) -> int:
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        return int(getattr(text, "max_position_embeddings", 0) or 4096)

    def _bytes_of(self, token: int) -> bytes:
        return token_bytes(self.tokenizer, token)

    def park(self) -> float | None:
        """Host RAM keeps the loaded model (``engines.torch_park``); its prefix cache goes."""
        self._prefix.clear()
        return park_module(self.model) if self.model is not None else None

    def unpark(self) -> float | None:
        _, footprint = measure(lambda: unpark_module(self.model, self.device))
        self._peak.loaded(footprint)
        return footprint

    def peak_gb(self) -> float | None:
        return self._peak.peak_gb

    def unload(self) -> None:
        self._prefix.clear()
        self.model = self.processor = self.tokenizer = self._grammars = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ---- prompt -------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        source = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        if not isinstance(source, str):
            raise ModelLoadFailed(f"{self.spec.id}: the checkpoint has no chat template")
        variables = {k: v for k, v in self.tokenizer.special_tokens_map.items() if isinstance(v, str)}
        return ChatTemplate(
            source=source, variables=variables, image_part={"type": "image"} if self.spec.vision else None
        )

    def _inputs(self, prompt: str, images: tuple[bytes, ...]) -> dict[str, Any]:
        if images:
            pictures = [to_pil(raw) for raw in images]
            encoded = self.processor(text=[prompt], images=pictures, return_tensors="pt")
        else:
            encoded = self.tokenizer([prompt], add_special_tokens=False, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in encoded.items()}

    # ---- generation ---------------------------------------------------------------------------

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        if self.model is None:
            raise RuntimeError(f"{self.spec.id} is not loaded")
        inputs = self._inputs(job.prompt, job.images)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        budget = completion_budget(job.params.max_tokens, prompt_tokens, self.context)
        cached, cache = self._cached(inputs, bool(job.images))
        yield Prompted(prompt_tokens, budget, cached_tokens=cached)
        yield from self._pieces(inputs, budget, job.params, cache)

    def _cached(self, inputs: dict[str, Any], images: bool) -> tuple[int, Any]:
        """(prompt tokens reused, the cache to continue from) — see ``transformers_prefix``.
        Advances the cache to this prompt's snapshot boundary and keeps a copy for the next one."""
        if images:
            self._prefix.clear()  # a multimodal prompt's cache is no text prefix
            return 0, None
        ids = inputs["input_ids"][0].tolist()
        cached, cache = self._prefix.lookup(ids)
        boundary = self._prefix.boundary(len(ids))
        if boundary > cached:
            head = {k: v[:, :boundary] for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                # One new token, never fed back: the cache then holds exactly ``boundary`` tokens.
                out = self.model.generate(
                    **head, cache=cache, max_new_tokens=1, do_sample=False, return_dict_in_generate=True
                )
            cache = out.past_key_values
            self._prefix.store(ids[:boundary], cache)
        return cached, cache

    def _generate_kwargs(
        self, params: SamplingParams, budget: int, prompt_tokens: int = 0, scores: StepScores | None = None
    ) -> dict[str, Any]:
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
        if self._grammars is not None:
            processors = logits_processors(params, prompt_tokens, self._grammars, scores)
            if processors:
                kwargs["logits_processor"] = LogitsProcessorList(processors)
        return kwargs

    def _pieces(
        self, inputs: dict[str, Any], budget: int, params: SamplingParams, cache: Any = None
    ) -> Generator[str | LoggedPiece | None, None, None]:
        halt = threading.Event()
        streamer = _QueueStreamer()
        scores = StepScores() if params.logprobs is not None else None
        kwargs = self._generate_kwargs(params, budget, int(inputs["input_ids"].shape[1]), scores)
        if cache is not None:
            kwargs["cache"] = cache

        def work() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with self._peak.serving(), torch.inference_mode():
                    self.model.generate(
                        **inputs, **kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Halt(halt)])
                    )
            except BaseException as exc:  # handed to the consumer, raised there
                streamer.queue.put(exc)
            finally:
                streamer.queue.put(_DONE)

        thread = threading.Thread(target=work, name=f"generate-{self.spec.id}", daemon=True)
        thread.start()
        detok = Detokenizer(self.tokenizer)
        produced = 0
        try:
            while (item := streamer.queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                if item in self._eos:
                    yield None
                    return
                text = detok.push(item)
                if scores is None:
                    yield text
                else:  # the step's scores were kept before its token was streamed
                    step = scores.steps[produced]
                    yield LoggedPiece(text, token_logprob(step.numpy(), item, params.logprobs or 0, self._bytes_of))
                produced += 1
        finally:
            halt.set()
            thread.join()
