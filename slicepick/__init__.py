"""slicepick: which 2D slices of 3D medical volumes to annotate next.

The library behind the Snakemake workflow: data preparation, one shared training
loop, suggestion strategies, evaluation and reporting. It never imports snakemake,
so every piece can be tested and used from a notebook.
"""
__version__ = "0.1.0"
