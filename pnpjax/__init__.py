"""pnpjax: tiny neural Perspective-n-Point solvers, trained in JAX, shipped to the web."""

__version__ = "0.1.0"
