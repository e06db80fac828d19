"""ldjax: force analysis of learning dynamics in JAX.

One update on x_u moves log π on x_o by  Δ log π(x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u) + O(η²).
"""

from ldjax import losses
from ldjax import paths
from ldjax import plot
from ldjax._src.adapters import ApplyFunction
from ldjax._src.adapters import as_apply_fn
from ldjax._src.adapters import binary_logits
from ldjax._src.adapters import from_equinox
from ldjax._src.adapters import from_linen
from ldjax._src.adapters import from_nnx
from ldjax._src.adapters import to_nnx
from ldjax._src.attribution import Attribution
from ldjax._src.attribution import TrainingTrace
from ldjax._src.attribution import force_attribution
from ldjax._src.checks import MemoryBudgetError
from ldjax._src.chunked import chunked_ntk
from ldjax._src.explain import KernelPlan
from ldjax._src.explain import explain_kernel
from ldjax._src.features import Energy
from ldjax._src.features import FeatureStepResult
from ldjax._src.features import energy
from ldjax._src.features import feature_decomposition
from ldjax._src.features import feature_step
from ldjax._src.features import feature_step_fn
from ldjax._src.ntk import jacobian
from ldjax._src.ntk import ntk_vector_product
from ldjax._src.ntk_fn import KernelFunction
from ldjax._src.ntk_fn import empirical_ntk
from ldjax._src.ntk_fn import empirical_ntk_fn
from ldjax._src.one_step import OneStepResult
from ldjax._src.one_step import decomposition
from ldjax._src.one_step import one_step
from ldjax._src.one_step import one_step_fn
from ldjax._src.optimizer_kernels import PreconditionedStep
from ldjax._src.optimizer_kernels import preconditioned_ntk
from ldjax._src.optimizer_kernels import preconditioned_one_step
from ldjax._src.optimizer_updates import OptimizerUpdate
from ldjax._src.optimizer_updates import optimizer_update
from ldjax._src.predict import LogProbChange
from ldjax._src.predict import predict_fn
from ldjax._src.predict import predict_log_prob_change
from ldjax._src.results_io import Loaded
from ldjax._src.results_io import load_results
from ldjax._src.results_io import save_results
from ldjax._src.sharding import sharded_log_prob_change
from ldjax._src.sharding import sharded_ntk
from ldjax._src.terms import a_term
from ldjax._src.terms import g_term
from ldjax._src.training import TrainResult
from ldjax._src.training import epoch_batches
from ldjax._src.training import train

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "experiments", "models")
"""Imported on first use (``ldjax.models.MLP`` after a plain ``import ldjax``): they bring flax,
scikit-learn or matplotlib, which ``import ldjax`` does not."""


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"ldjax.{name}")
    raise AttributeError(f"module 'ldjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = (
    "a_term",
    "ApplyFunction",
    "as_apply_fn",
    "Attribution",
    "binary_logits",
    "chunked_ntk",
    "data",
    "decomposition",
    "empirical_ntk",
    "empirical_ntk_fn",
    "energy",
    "Energy",
    "epoch_batches",
    "force_attribution",
    "explain_kernel",
    "from_equinox",
    "feature_decomposition",
    "feature_step",
    "feature_step_fn",
    "FeatureStepResult",
    "from_linen",
    "from_nnx",
    "g_term",
    "jacobian",
    "KernelFunction",
    "KernelPlan",
    "load_results",
    "Loaded",
    "LogProbChange",
    "MemoryBudgetError",
    "losses",
    "models",
    "ntk_vector_product",
    "one_step",
    "one_step_fn",
    "OneStepResult",
    "optimizer_update",
    "OptimizerUpdate",
    "paths",
    "plot",
    "preconditioned_ntk",
    "preconditioned_one_step",
    "PreconditionedStep",
    "predict_fn",
    "predict_log_prob_change",
    "save_results",
    "sharded_log_prob_change",
    "sharded_ntk",
    "to_nnx",
    "train",
    "TrainingTrace",
    "TrainResult",
)
