"""The data flywheel: human labels, the LLM judge, judge-human alignment, the review page
and the run report."""
