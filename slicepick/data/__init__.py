"""Data in: the synthetic generator, readers of the on-disk layouts, preparation."""
