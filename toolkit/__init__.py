"""xpt.toolkit: the CLI, mesh sources, the procedural library, sampling and the shard format."""
