"""Validators: streaming checks that stop a bad answer early, and final checks of the whole
answer. See `base` for the interface and `registry` for building them from config specs."""

from gristmill.validation.base import (CompositeStreamCheck, Context, FinalValidator, Rejection,
                                       StreamCheck, StreamValidator, run_final, run_stream_on_text,
                                       start_checks)
from gristmill.validation.registry import (DEFAULT_FINAL, DEFAULT_STREAM, REGISTRY, build,
                                           build_all, build_final, build_stream, merge_specs,
                                           register)

__all__ = ["CompositeStreamCheck", "Context", "DEFAULT_FINAL", "DEFAULT_STREAM",
           "FinalValidator", "REGISTRY", "Rejection", "StreamCheck", "StreamValidator", "build",
           "build_all", "build_final", "build_stream", "merge_specs", "register", "run_final",
           "run_stream_on_text", "start_checks"]
