"""The shard format: sample schema, writer, builder, manifest, verify and inspect."""
