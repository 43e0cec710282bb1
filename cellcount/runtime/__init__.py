"""Run-time helpers shared by every stage: atomic files, provenance, allocator tuning."""
