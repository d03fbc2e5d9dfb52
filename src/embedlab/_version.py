"""embedlab's version, in a leaf module: library code imports it from here, so no module imports the
package root (which is the top layer: it re-exports the public names lazily)."""

__version__ = "0.1.0"
