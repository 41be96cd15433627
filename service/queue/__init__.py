"""The Redis side of the pipeline: Lua scripts, the work stream and the submission records."""
