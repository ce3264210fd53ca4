"""The procedural aircraft dataset: visae's embedded stand-in for FGVC-Aircraft.

Aircraft are assembled from parts (fuselage, nose, wings, engines, tail, windows, gear,
livery stripe, propellers), posed in 3D, projected and rasterised over sky, cloud and
ground backgrounds with distractors. Every image comes with a pixel-level part map and a
variant -> family -> manufacturer label; a few variants are withheld as the ``ood`` split.

``generate_synth_aircraft(SynthAircraftConfig(out=...))`` or ``visae data synth-aircraft``.
"""

from visae.data.synth.catalog import PART_NAMES, class_names, hierarchy, ood_variants
from visae.data.synth.generate import SynthAircraftConfig, generate_synth_aircraft

__all__ = ["PART_NAMES", "SynthAircraftConfig", "class_names", "generate_synth_aircraft", "hierarchy", "ood_variants"]
