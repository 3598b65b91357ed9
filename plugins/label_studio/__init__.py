"""ovsam adapter for label studio (see the project README; host packages come with the `label-studio` extra)."""
