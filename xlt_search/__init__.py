"""xlt-search: which English intermediate tasks, and how many, make a multilingual encoder transfer best."""

__version__ = "0.1.0"
