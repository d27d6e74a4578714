"""`gristmill batches cancel RUN`: cancel a run's batches that have not ended. Lines already
answered are delivered by the provider as usual; a resume reads them and asks again only
for what the cancel left unanswered."""

from __future__ import annotations

from pathlib import Path

from gristmill.config.pipeline import PipelineConfig

from gristmill.backends.openai_batch.api import TERMINAL, BatchApi, patiently
from gristmill.backends.openai_batch.ledger import read_files
from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.backends.openai_http.refusals import Where


async def cancel_open(run_dir: Path, config: PipelineConfig) -> list[str]:
    """Cancel every batch of the run not yet ended; one line per batch, saying so."""
    said = []
    for backend, files in read_files(run_dir).items():
        open_ones = [f for f in files if f["batch_id"] and not f["done"]
                     and f["status"] not in TERMINAL]
        if not open_ones:
            continue
        settings = config.backends[backend]
        online = OpenAIHTTPBackend(backend, settings)  # its key and headers, as the run's
        api = BatchApi(settings.base_urls[0], online.headers,
                       Where(backend, settings.model, online.key_variable))
        try:
            for entry in open_ones:
                batch = await patiently(api.cancel, entry["batch_id"])
                said.append(f"{backend}: {entry['batch_id']} ({entry['name']}): "
                            f"{batch.get('status')}")
        finally:
            await api.aclose()
    return said
