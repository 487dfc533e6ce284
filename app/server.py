"""Running the web app under uvicorn: one way, shared by ``serve``, ``demo`` and the benchmark."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI


def run_server(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
    # Move the objects of startup (modules, the app, SQLAlchemy's mappers) out of the collector's
    # sight: otherwise every full GC pass walks ~100k of them, a 40–50 ms stall in about 2 % of
    # requests (measured by benchmarks/). Only in long-lived servers: frozen objects are never
    # freed, so tests that build many apps must not do this.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
