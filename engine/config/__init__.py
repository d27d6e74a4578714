"""Configuration: pydantic models of a pipeline, how it is loaded, and what a resume may change."""
