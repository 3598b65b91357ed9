"""ovsam CPU benchmark sections (see bench/README.md)."""
