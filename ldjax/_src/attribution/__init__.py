r"""Force attribution: which training examples pushed each probe's log-probability, and through which layers.

Training example ``j`` with its share :math:`G_j` of an update's force (learning rate :math:`\eta`)
moves probe ``o``'s :math:`\log\pi(y_o \mid x_o)` by, to first order,

.. math:: s_{oj} = -\eta\, \big[A(x_o)\, K(x_o, x_j)\, G_j\big]_{y_o}
          = \sum_{\text{layers } l} \langle \nabla_{\theta_l} \log\pi(y_o \mid x_o),\; -\eta\, J_l(x_j)^\top G_j \rangle

(summed over the response tokens of a sequence probe): the A·K·G counterpart of TracIn-style scores,
with the A term applied at the probe and the loss's own force G at the training example. Over a
training trace (the updates of an epoch) the scores are summed over the updates that used ``j``.

Two ways to compute it, one result type:

- ``"exact"``: the structured per-layer kernels of the scalar model
  :math:`\langle w, z(\theta, x)\rangle` (:mod:`.exact`);
- ``"projected"``: LoGra-style sketches of every per-example gradient, per layer
  :math:`P_{in}^\top g\, P_{out}` from the layer's inputs and output cotangents, never formed at full
  size (:mod:`.projected`); unbiased, exact at full rank.

Both stream over the updates in chunks sized by a memory budget, with a progress bar, and can keep
finished chunks on disk to resume an interrupted run (:mod:`.streaming`); a ``mesh`` splits each chunk's
updates over devices, across processes under ``jax.distributed``.
"""

from ldjax._src.attribution.api import Attribution
from ldjax._src.attribution.api import AttributionMethod
from ldjax._src.attribution.api import force_attribution
from ldjax._src.attribution.arguments import TrainingTrace

__all__ = ("Attribution", "AttributionMethod", "TrainingTrace", "force_attribution")
