"""Chat with a GGUF model through llama-cpp-python (LLMUX-RT-002).

llmux renders the prompt itself with the template stored in the GGUF (or ``chat_template``
from the options) and parses the output with the same family parsers as the transformers
runtime: llama-cpp-python's own chat handlers cannot stream tool calls with
``tool_choice="auto"``. Generation is llama-cpp-python's token generator, pulled one token at
a time, so a cancelled request stops within a token. Its KV-cache prefix reuse makes the
next turn of a conversation only evaluate the new messages.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import llama_cpp
import structlog

from llmux.backends.base import ChatEvent, ChatJob, SamplingParams
from llmux.backends.options import LlamaCppOptions
from llmux.chat import generation
from llmux.chat.messages import ImagePolicy, has_images
from llmux.chat.prompt import output_setup, prompt_input
from llmux.chat.template import render
from llmux.errors import InvalidRequest, ModelLoadFailed
from llmux.registry import PhysicalModel, Registry
from llmux.residency.memory import measure

log = structlog.get_logger("llmux.backends")

DEFAULT_TEMPERATURE = 0.8


class LlamaCppLLM:
    def __init__(self, spec: PhysicalModel, registry: Registry, options: LlamaCppOptions) -> None:
        self.spec = spec
        self.path = registry.weights_path(spec)
        self.mmproj = registry.weights_path(spec, options.mmproj) if options.mmproj else None
        self.options = options
        self.images = ImagePolicy(remote=registry.limits.remote_images,
                                  max_bytes=int(registry.limits.max_request_mb * 2**20))
        self.llm: Any = None
        self.vision: Any = None  # llmux.backends.llamacpp_vision.VisionEncoder when mmproj is set
        self._template = ""
        self._specials: dict[str, str] = {}
        self._pieces_cache: dict[int, bytes] = {}

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
        self._specials = {"bos_token": self._token_text(self.llm.token_bos()),
                          "eos_token": self._token_text(self.llm.token_eos())}
        log.info("model.weights_loaded", model=self.spec.id, context=self.llm.n_ctx(), vision=self.vision is not None,
                 gpu_layers=self.options.n_gpu_layers, seconds=round(time.perf_counter() - started, 3), gb=footprint)
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
        if self.mmproj is None:
            return llm, None
        from llmux.backends.llamacpp_vision import VisionEncoder

        try:
            return llm, VisionEncoder(self.mmproj, llm, use_gpu=self.options.n_gpu_layers != 0)
        except BaseException:
            llm.close()  # a failed load leaves nothing allocated
            raise

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

    def unload(self) -> None:
        if self.vision is not None:
            self.vision.close()
            self.vision = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None
        self._pieces_cache = {}

    # ---- prompt -------------------------------------------------------------------------------

    def template_source(self) -> str:
        return self._template

    def render(self, job: ChatJob) -> tuple[str, list[bytes]]:
        """The prompt text exactly as the model sees it, and the images it refers to."""
        if self.vision is None and has_images(job.messages):
            raise InvalidRequest(f"{self.spec.id} has no vision encoder configured (options.mmproj)",
                                 param="messages", code="vision_not_supported")
        marker = {"type": "text", "text": self.vision.marker if self.vision is not None else ""}
        made = prompt_input(job, family=self.spec.family, vision=self.vision is not None,
                            template_source=self._template, image_part=marker, policy=self.images)
        try:
            prompt = render(self._template, made.messages, tools=made.tools, **self._specials, **made.kwargs)
        except InvalidRequest:
            raise
        except Exception as exc:  # jinja2.TemplateError and friends: the conversation is at fault
            raise InvalidRequest(f"the model's chat template cannot render these messages: {exc}", param="messages") from None
        return prompt, made.images

    # ---- generation ---------------------------------------------------------------------------

    def chat(self, job: ChatJob, cancel: threading.Event) -> Iterator[ChatEvent]:
        if self.llm is None:
            raise RuntimeError(f"{self.spec.id} is not loaded")
        prompt, images = self.render(job)
        setup = output_setup(self.spec.family, job, prompt)
        log.debug("chat.rendered", model=self.spec.id, prompt=setup.prompt, images=len(images))
        if images:
            tokens = self.vision.evaluate(setup.prompt, images)
        else:
            tokens = self.llm.tokenize(setup.prompt.encode("utf-8"), add_bos=False, special=True)
        budget = generation.completion_budget(job.params.max_tokens, len(tokens), self.llm.n_ctx())
        return generation.run(
            self._pieces(tokens, job.params, reuse_cache=not images),
            parser=setup.parser,
            preamble=setup.preamble,
            stops=job.params.stop,
            prompt_tokens=len(tokens),
            max_tokens=budget,
            cancel=cancel,
            model=self.spec.id,
        )

    def _pieces(self, tokens: list[int], params: SamplingParams, *, reuse_cache: bool) -> Generator[str | None, None, None]:
        llm = self.llm
        if params.seed is not None:
            llm.set_seed(params.seed)
        temperature = DEFAULT_TEMPERATURE if params.temperature is None else params.temperature
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        try:
            for token in llm.generate(tokens, temp=temperature, top_p=1.0 if params.top_p is None else params.top_p,
                                      reset=True):
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    yield None
                    return
                yield decoder.decode(self._token_bytes(token))
        finally:
            if not reuse_cache:
                # Image positions hold no token ids: never let the next prompt "match" them.
                llm.reset()
