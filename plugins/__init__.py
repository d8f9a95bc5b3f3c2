"""Built-in plugins, loaded through the same entry points as third-party ones."""
