"""ovsam adapter for fiftyone (see the project README; host packages come with the `fiftyone` extra)."""
