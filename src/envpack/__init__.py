"""envpack: ship a pixi/conda environment to a machine that has nothing."""

__version__ = "0.1.0"
