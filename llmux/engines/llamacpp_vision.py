"""Images for GGUF vision models through llama.cpp's multimodal library (mtmd) and the
model's mmproj encoder file, as llama-cpp-python 0.3.36 exposes it (``llama_cpp.mtmd_cpp``).

The prompt is rendered with mtmd's media marker where each image goes; ``mtmd_tokenize``
splits it into text and image chunks, which are evaluated into the llama context in order.
Generation then continues from that context like any other prompt.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd

from llmux.protocol.errors import InvalidRequest, ModelLoadFailed


class VisionEncoder:
    def __init__(self, mmproj: Path, llm: Any, *, use_gpu: bool) -> None:
        if not mmproj.is_file():
            raise ModelLoadFailed(f"vision encoder not found: {mmproj}")
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = llm.n_threads
        self._ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), llm.model, params)
        if self._ctx is None:
            raise ModelLoadFailed(f"cannot load the vision encoder {mmproj}")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelLoadFailed(f"{mmproj} is not a vision encoder")
        self._llm = llm
        self._context = int(llm.n_ctx())
        """Positions one sequence may use (the context may be wider: batching's slots)."""
        self.marker = mtmd.mtmd_default_marker().decode("utf-8")

    def close(self) -> None:
        if self._ctx is not None:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None

    def _bitmap(self, raw: bytes) -> Any:
        buffer = (ctypes.c_uint8 * len(raw)).from_buffer(bytearray(raw))
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, buffer, len(raw), False)
        if bitmap is None:
            raise InvalidRequest("llama.cpp could not decode the image", param="image_url", code="invalid_image")
        return bitmap

    def evaluate(self, prompt: str, images: list[bytes]) -> list[int]:
        """Evaluate prompt + images into a fresh context; returns the context's token list
        (image positions included), ready for ``Llama.generate`` to continue from."""
        llm = self._llm
        bitmaps = [self._bitmap(raw) for raw in images]
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text()
            encoded = prompt.encode("utf-8")
            text.text, text.text_len, text.add_special, text.parse_special = encoded, len(encoded), False, True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            if mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), array, len(bitmaps)) != 0:
                raise InvalidRequest("the images do not match the prompt's image markers", param="messages")
            llm.reset()
            llm._ctx.kv_cache_clear()
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                self._eval_chunk(mtmd.mtmd_input_chunks_get(chunks, i))
            tokens: list[int] = llm.input_ids[: llm.n_tokens].tolist()
            return tokens
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _eval_chunk(self, chunk: Any) -> None:
        llm = self._llm
        if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            tokens = [pointer[j] for j in range(count.value)]
            self._check_room(len(tokens))
            llm.eval(tokens)
            return
        self._check_room(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        past = llama_cpp.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunk_single(
            self._ctx,
            llm._ctx.ctx,
            chunk,
            llama_cpp.llama_pos(llm.n_tokens),
            llama_cpp.llama_seq_id(0),
            llm.n_batch,
            False,
            ctypes.byref(past),
        )
        if status != 0:
            raise RuntimeError(f"mtmd failed to evaluate an image (status {status})")
        llm.n_tokens = past.value

    def _check_room(self, count: int) -> None:
        if self._llm.n_tokens + count > self._context:
            raise InvalidRequest(
                f"The prompt with its images exceeds this model's context of {self._context} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
