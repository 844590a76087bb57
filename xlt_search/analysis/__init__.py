"""Reading a search: scaling curves, task contributions, chance and learning, the best configuration,
and the report that draws them (each module imports what it reads; nothing here)."""
