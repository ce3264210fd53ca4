"""The sharded activation store: ``Store(path)`` reads one, ``StoreWriter`` writes one.

Format: docs/formats.md ("Activation store"); code: format.py (metadata, dtypes,
checksums), writer.py, reader.py, stream.py (shuffled batches), verify.py, stats.py.
"""

from visae.store.format import FORMAT_VERSION, StoreMeta
from visae.store.reader import ImageTokens, Store
from visae.store.verify import VerifyReport, verify
from visae.store.writer import StoreWriter

__all__ = ["FORMAT_VERSION", "ImageTokens", "Store", "StoreMeta", "StoreWriter", "VerifyReport", "verify"]
