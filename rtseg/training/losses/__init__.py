"""The loss terms a training recipe combines, written once and shared by every network.

``loss:`` in a config maps term names to terms; each term reads one network output (its
``output``, by default the output named like the term) and has a ``type``:

==================================  =====================================================
``cross_entropy``                   every labelled pixel, ``by_weight_sum`` or ``by_pixels``
``bootstrapped_cross_entropy``      the hardest fraction of each image's pixels (TF coarse)
``ohem_cross_entropy``              pixels below a probability, at least ``min_kept``
``boundary_bce``                    PIDNet's class-balanced boundary BCE
``boundary_aware_cross_entropy``    PIDNet's BAS: the semantic loss near predicted boundaries
``detail``                          STDC's BCE + dice on Laplacian detail targets
==================================  =====================================================

``LossRecipe(terms, class_weights, dist_info)(outputs, labels)`` computes their weighted sum.
"""

from rtseg.training.losses.base import LOSS_TERMS, LossTerm, Partial, register_loss, term_class
from rtseg.training.losses.boundary import BoundaryAwareCrossEntropy, BoundaryBCE, canny_edges, label_boundaries
from rtseg.training.losses.cross_entropy import BootstrappedCrossEntropy, CrossEntropy, OhemCrossEntropy
from rtseg.training.losses.detail import DetailLoss, detail_targets
from rtseg.training.losses.recipe import LossRecipe, LossValue

__all__ = ["LOSS_TERMS", "LossTerm", "Partial", "register_loss", "term_class", "LossRecipe", "LossValue",
           "CrossEntropy", "BootstrappedCrossEntropy", "OhemCrossEntropy", "BoundaryBCE",
           "BoundaryAwareCrossEntropy", "DetailLoss", "label_boundaries", "canny_edges", "detail_targets"]
