"""A Hugging Face checkpoint through transformers, as a text engine (LLMUX-RT-001).

The checkpoint's chat template is what ``template()`` hands the chat pipeline; ``generate``
tokenizes the rendered prompt (through the multimodal processor when images come with it),
runs ``model.generate`` in a helper thread and hands token ids over a queue, decoded to text
pieces. A stop criterion checks a halt flag every token, so a cancelled job stops within one.

With ``options.max_parallel`` > 1 the engine batches instead (``transformers_batch``): ``submit``
hands jobs to the model's one decode thread, which decodes up to that many sequences together;
image prompts still take the serial path, alone. Models whose cache layers cannot be batched
(gpt-oss's sliding-window layers) stay serial, with a ``model.batching_unsupported`` log line.
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
    DynamicCache,
    StoppingCriteriaList,
)

from llmux.engines.base import ChatTemplate, LoggedPiece, Prompted, SamplingParams, TextJob
from llmux.engines.devices import open_measured, torch_device
from llmux.engines.images import to_pil
from llmux.engines.logprobs import token_logprob
from llmux.engines.text import Generation, Item, SerialTextEngine, completion_budget
from llmux.engines.torch_park import PeakMeter, park_module, unpark_module
from llmux.engines.transformers_batch import TransformersBatch
from llmux.engines.transformers_batch_cache import batchable, sequence_bytes
from llmux.engines.transformers_prefix import PrefixCache
from llmux.engines.transformers_sampling import (
    JsonGrammars,
    Start,
    StepScores,
    generate_kwargs,
    sequence_start,
    token_bytes,
)
from llmux.engines.transformers_stream import DONE, Detokenizer, Halt, QueueStreamer
from llmux.protocol.errors import ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import TransformersOptions
from llmux.residency.memory import measure

log = structlog.get_logger("llmux.engines")


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
        self._decoder: TransformersBatch | None = None
        self._peak = PeakMeter(self.device)

    # ---- lifecycle ----------------------------------------------------------------------------

    def load(self) -> float | None:
        if not self.path.exists():
            raise ModelLoadFailed(f"weights not found: {self.path}")
        started = time.perf_counter()
        footprint = open_measured(self._open, self.unload, self.options.threads)
        self.context = self.options.max_context or self._model_context()
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = self.model.get_output_embeddings().weight.shape[0]
        self._grammars = JsonGrammars(self.tokenizer, int(vocab))
        self._peak.loaded(footprint)  # what was measured; the batching reserve is no growth of it
        footprint = self._batching(footprint)
        log.info(
            "model.weights_loaded",
            model=self.spec.id,
            device=self.device,
            context=self.context,
            max_parallel=self.options.max_parallel if self._decoder is not None else 1,
            seconds=round(time.perf_counter() - started, 3),
            gb=footprint,
        )
        return footprint

    def _batching(self, footprint: float | None) -> float | None:
        """Start the decode thread when ``max_parallel`` > 1 and the model's cache can be batched.
        Its caches grow as tokens come (``DynamicCache``), so their peak — ``max_parallel``
        sequences of the full context, sized from a 2-token probe — is added to the measured
        footprint (the planner's figure): accounted, not allocated."""
        slots = self.options.max_parallel
        if slots < 2:
            return footprint
        probe = self._new_cache()
        if reason := batchable(probe):
            log.warning("model.batching_unsupported", model=self.spec.id, reason=reason)
            return footprint
        with torch.inference_mode():
            self.model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=self.model.device), cache=probe)
        reserve_gb = slots * sequence_bytes(probe, 2, self.context) / 1e9
        self._decoder = TransformersBatch(
            self.model,
            slots=slots,
            prefix=self._prefix,
            prepare=self._start,
            new_cache=self._new_cache,
            eos=self._eos,
            serial=self.generate,
            name=self.spec.id,
        )
        log.info(
            "model.kv_reserved", model=self.spec.id, sequences=slots, context=self.context, gb=round(reserve_gb, 3)
        )
        return None if footprint is None else footprint + reserve_gb

    def _new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

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
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
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

    def submit(self, job: TextJob) -> Generation:
        return super().submit(job) if self._decoder is None else self._decoder.submit(job)

    def occupancy(self) -> tuple[int, int]:
        return super().occupancy() if self._decoder is None else self._decoder.occupancy()

    def _start(self, job: TextJob) -> Start:
        """A text job made ready for the batched path (on its decode thread)."""
        ids = self._inputs(job.prompt, ())["input_ids"][0].tolist()
        budget = completion_budget(job.params.max_tokens, len(ids), self.context) if ids else 0
        return sequence_start(self.model, self.tokenizer, self._grammars, ids, job.params, budget)

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

    def _pieces(
        self, inputs: dict[str, Any], budget: int, params: SamplingParams, cache: Any = None
    ) -> Generator[str | LoggedPiece | None, None, None]:
        halt = threading.Event()
        streamer = QueueStreamer()
        scores = StepScores() if params.logprobs is not None else None
        kwargs = generate_kwargs(params, budget, self._grammars, int(inputs["input_ids"].shape[1]), scores)
        if cache is not None:
            kwargs["cache"] = cache

        def work() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with self._peak.serving(), torch.inference_mode():
                    self.model.generate(
                        **inputs, **kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([Halt(halt)])
                    )
            except BaseException as exc:  # handed to the consumer, raised there
                streamer.queue.put(exc)
            finally:
                streamer.queue.put(DONE)

        thread = threading.Thread(target=work, name=f"generate-{self.spec.id}", daemon=True)
        thread.start()
        detok = Detokenizer(self.tokenizer)
        produced = 0
        try:
            while (item := streamer.queue.get()) is not DONE:
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
