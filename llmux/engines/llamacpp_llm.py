"""A GGUF model through llama-cpp-python, as a text engine (LLMUX-RT-002).

``template()`` hands the chat pipeline the template stored in the GGUF (or ``chat_template``
from the options), so prompts are rendered and outputs parsed by the same code as for the
transformers engine: llama-cpp-python's own chat handlers cannot stream tool calls with
``tool_choice="auto"``. Generation is llama-cpp-python's token generator, pulled one token at
a time, so a cancelled job stops within a token. Its KV-cache prefix reuse makes the next turn
of a conversation only evaluate the new messages.

With ``options.max_parallel`` > 1 the engine batches instead (``llamacpp_batch``): the context
is widened to one full ``n_ctx`` per slot at load, and ``submit`` hands jobs to the model's
one decode thread; image prompts still take the serial path, alone.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import llama_cpp
import numpy as np
import structlog
from llama_cpp.llama_grammar import LlamaGrammar

from llmux.engines.base import ChatTemplate, LoggedPiece, Prompted, SamplingParams, TextJob, TokenLogprob
from llmux.engines.host_memory import release_host_memory
from llmux.engines.llamacpp_batch import BatchDecoder
from llmux.engines.logprobs import token_logprob
from llmux.engines.text import Generation, Item, SerialTextEngine, completion_budget
from llmux.protocol.errors import InvalidRequest, ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.registry.options import LlamaCppOptions
from llmux.residency.memory import measure

log = structlog.get_logger("llmux.engines")

DEFAULT_TEMPERATURE = 0.8


class LlamaCppLLM(SerialTextEngine):
    def __init__(self, spec: PhysicalModel, registry: Registry, options: LlamaCppOptions) -> None:
        super().__init__(spec.id)
        self.spec = spec
        self.path = registry.weights_path(spec)
        self.mmproj = registry.weights_path(spec, options.mmproj) if options.mmproj else None
        self.options = options
        self.llm: Any = None
        self.vision: Any = None  # llmux.engines.llamacpp_vision.VisionEncoder when mmproj is set
        self._template = ""
        self._specials: dict[str, str] = {}
        self._pieces_cache: dict[int, bytes] = {}
        self._decoder: BatchDecoder | None = None

    @property
    def context(self) -> int:
        """Tokens one sequence's context holds (0 before ``load``), what ``/v1/models`` reports
        (with ``max_parallel`` sequences the loaded context is that many times larger)."""
        return self.options.n_ctx if self.llm is not None else 0

    # ---- lifecycle ----------------------------------------------------------------------------

    def load(self) -> float | None:
        if not self.path.is_file():
            raise ModelLoadFailed(f"weights not found: {self.path}")
        started = time.perf_counter()
        # Measured around both files: the footprint includes the vision encoder.
        (self.llm, self.vision), footprint = measure(self._open)
        self._template = self.options.chat_template or self.llm.metadata.get("tokenizer.chat_template") or ""
        if not self._template:
            self.unload()
            raise ModelLoadFailed(f"{self.spec.id}: the GGUF has no chat template; set options.chat_template")
        self._specials = {
            "bos_token": self._token_text(self.llm.token_bos()),
            "eos_token": self._token_text(self.llm.token_eos()),
        }
        if self.options.max_parallel > 1:
            self._decoder = BatchDecoder(
                self.llm,
                slots=self.options.max_parallel,
                context=self.options.n_ctx,
                piece=self._token_bytes,
                serial=self.generate,
                name=self.spec.id,
            )
        log.info(
            "model.weights_loaded",
            model=self.spec.id,
            context=self.options.n_ctx,
            max_parallel=self.options.max_parallel,
            vision=self.vision is not None,
            gpu_layers=self.options.n_gpu_layers,
            seconds=round(time.perf_counter() - started, 3),
            gb=footprint,
        )
        return footprint

    def _open(self) -> tuple[Any, Any]:
        llm = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.options.n_ctx,
            n_gpu_layers=self.options.n_gpu_layers,
            n_threads=self.options.threads,
            n_threads_batch=self.options.threads,
            verbose=False,
        )
        try:
            vision = None
            if self.mmproj is not None:
                from llmux.engines.llamacpp_vision import VisionEncoder

                vision = VisionEncoder(self.mmproj, llm, use_gpu=self.options.n_gpu_layers != 0)
            if self.options.max_parallel > 1:
                self._widen(llm)
            return llm, vision
        except BaseException:
            llm.close()  # a failed load leaves nothing allocated
            raise

    def _widen(self, llm: Any) -> None:
        """Replace the context with one that holds ``max_parallel`` sequences of ``n_ctx`` each
        (``Llama`` cannot create one itself): allocated now, so the load's footprint is the peak."""
        from llama_cpp._internals import LlamaContext

        slots = self.options.max_parallel
        params = llm.context_params
        params.n_ctx = self.options.n_ctx * slots
        params.n_seq_max = slots
        # A KV stream per sequence: attention never spans another sequence's cells, so a
        # sequence's tokens do not depend on what else runs (a unified buffer changes the float
        # reduction order and with it greedy output; measured on CPU it was only ~15 % faster).
        params.kv_unified = False
        llm._ctx.close()
        llm._ctx = LlamaContext(model=llm._model, params=params, verbose=False)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._token_bytes(token).decode("utf-8", errors="replace")

    def _token_bytes(self, token: int) -> bytes:
        """One token's bytes, special tokens included. Not ``Llama.detokenize``: it uses a
        32-byte buffer and silently drops longer tokens (long runs of spaces in code vocabularies)."""
        piece = self._pieces_cache.get(token)
        if piece is None:
            size = 64
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buffer, size, 0, True)
                if n >= 0:
                    break
                size = -n
            piece = self._pieces_cache[token] = buffer.raw[:n]
        return piece

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        """From the logits of the step that chose ``token``: the context's last output row
        (llama-cpp-python keeps no scores without ``logits_all``)."""
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        return token_logprob(logits, token, top, self._token_bytes)

    def park(self) -> float | None:
        """A ``Llama`` cannot move its GPU layers to the host and back: with layers on a GPU it
        declines (an unload; its mmap'd file stays in the page cache). With every layer on the
        CPU the object itself is the parked copy (0: count its footprint, KV cache included)."""
        on_gpu = llama_cpp.llama_supports_gpu_offload() and self.options.n_gpu_layers != 0
        return None if on_gpu or self.llm is None else 0.0

    def unpark(self) -> float | None:
        return None  # parked only with its layers on the CPU: nothing to copy back

    def unload(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        self._pieces_cache = {}
        release_host_memory()  # every swap: the freed context and heap go back to the OS

    # ---- prompt -------------------------------------------------------------------------------

    def template(self) -> ChatTemplate:
        marker = {"type": "text", "text": self.vision.marker} if self.vision is not None else None
        return ChatTemplate(source=self._template, variables=self._specials, image_part=marker)

    # ---- generation ---------------------------------------------------------------------------

    def submit(self, job: TextJob) -> Generation:
        return super().submit(job) if self._decoder is None else self._decoder.submit(job)

    def occupancy(self) -> tuple[int, int]:
        if self._decoder is not None:
            return self._decoder.occupancy()
        return super().occupancy()

    def generate(self, job: TextJob, cancel: threading.Event) -> Iterator[Item]:
        if self.llm is None:
            raise RuntimeError(f"{self.spec.id} is not loaded")
        if job.images:
            if self.vision is None:
                raise InvalidRequest(
                    f"{self.spec.id} has no vision encoder configured (options.mmproj)",
                    param="messages",
                    code="vision_not_supported",
                )
            tokens = self.vision.evaluate(job.prompt, list(job.images))
        else:
            tokens = self.llm.tokenize(job.prompt.encode("utf-8"), add_bos=False, special=True)
        budget = completion_budget(job.params.max_tokens, len(tokens), self.options.n_ctx)
        yield Prompted(len(tokens), budget, cached_tokens=0 if job.images else self._cached_prefix(tokens))
        yield from self._pieces(tokens, job.params, budget, reuse_cache=not job.images)

    def _cached_prefix(self, tokens: list[int]) -> int:
        """What ``Llama.generate(reset=True)`` will reuse: the evaluated tokens this prompt
        starts with (it re-evaluates at least the prompt's last token). Recurrent and hybrid
        models (Qwen3.5's linear attention) cannot drop a cache suffix: they re-evaluate all."""
        model = self.llm._model.model
        if (
            self.llm.n_tokens == 0
            or llama_cpp.llama_model_is_recurrent(model)
            or llama_cpp.llama_model_is_hybrid(model)
        ):
            return 0
        return int(llama_cpp.Llama.longest_token_prefix(self.llm._input_ids.tolist(), tokens[:-1]))

    def _pieces(
        self, tokens: list[int], params: SamplingParams, budget: int, *, reuse_cache: bool
    ) -> Generator[str | LoggedPiece | None, None, None]:
        llm = self.llm
        if params.seed is not None:
            llm.set_seed(params.seed)
        temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        produced = 0
        try:
            for token in llm.generate(tokens, **_sampling(params, temperature), reset=True):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    yield None
                    return
                text = decoder.decode(self._token_bytes(token))
                yield text if params.logprobs is None else LoggedPiece(text, self._logprob(token, params.logprobs))
                produced += 1
                if produced >= budget:
                    return
        finally:
            if not reuse_cache:
                # Image positions hold no token ids: never let the next prompt "match" them.
                llm.reset()


def _sampling(params: SamplingParams, temperature: float) -> dict[str, Any]:
    """llama-cpp-python's ``generate`` keywords; None leaves llama.cpp's own defaults (top-k 40,
    min-p 0.05, no penalties)."""
    kwargs: dict[str, Any] = {"temp": temperature, "top_p": 1.0 if params.top_p is None else params.top_p}
    for ours, theirs in [
        ("top_k", "top_k"),
        ("min_p", "min_p"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("repetition_penalty", "repeat_penalty"),
    ]:
        value = getattr(params, ours)
        if value is not None:
            kwargs[theirs] = value
    if params.json_schema is not None:
        try:
            kwargs["grammar"] = LlamaGrammar.from_json_schema(params.json_schema, verbose=False)
        except Exception as exc:  # the converter raises plain exceptions on schemas it cannot map
            raise InvalidRequest(
                f"This JSON schema cannot be enforced: {exc}", param="response_format.json_schema.schema"
            ) from None
    return kwargs
