"""Cityscapes evaluation with the official semantics: class/category IoU and iIoU.

``CityscapesMetrics`` accumulates label-id maps (on any device, summable across DDP ranks) and
``format_table`` prints its results; ``rtseg.metrics.folders`` scores folders of PNGs.
"""

from rtseg.metrics.cityscapes import CityscapesMetrics
from rtseg.metrics.table import format_table

__all__ = ["CityscapesMetrics", "format_table"]
