"""ovsam adapter for napari (see the project README; host packages come with the `napari` extra)."""
