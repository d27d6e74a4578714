"""`gristmill batches cancel RUN`: cancel a run's batches that have not ended. Lines already
answered are delivered by the provider as usual; a resume reads them and asks again only
for what the cancel left unanswered."""

from __future__ import annotations

import os
from pathlib import Path

from gristmill.config.keys import api_key, auth_headers
from gristmill.config.pipeline import PipelineConfig

from gristmill.backends.openai_batch.api import TERMINAL, BatchApi, patiently
from gristmill.backends.openai_batch.ledger import read_files
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
        key = api_key(backend, settings.api_key_env, settings.base_urls, os.environ)
        api = BatchApi(settings.base_urls[0],
                       {**settings.headers, **auth_headers(key, settings.auth_header)},
                       Where(backend, settings.model, key.variable))
        try:
            for entry in open_ones:
                batch = await patiently(api.cancel, entry["batch_id"])
                said.append(f"{backend}: {entry['batch_id']} ({entry['name']}): "
                            f"{batch.get('status')}")
        finally:
            await api.aclose()
    return said
