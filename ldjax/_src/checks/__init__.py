"""Early validation with messages that name the argument and what was expected.

One home for every check the public entry points share: batches and example shapes, finite values
(``check_finite=False`` skips them for speed), parameter dtypes, the shape of one example's logits
(classifier ``[k]`` or sequence ``[T, V]``), model inputs (token-id ranges of the built-in models),
targets, update rules, optimizers and their states, and the memory a result would need
(:func:`check_memory`, with the estimates :func:`jacobian_bytes` and :func:`kernel_bytes`).

The package, one job per file (every name is re-exported here: ``checks.logits_shape``):

- ``arrays.py``: batches and example shapes, finite values, parameter dtypes, positive scalars, integer
  ids (labels, tokens), the matmul precision scope, the shape signature that caches the shape checks;
- ``model.py``: one example's logits (``[k]`` or ``[T, V]``), the model's own input check, forward mode
  (``jax.custom_vjp``), losses and targets, forces and their parts, a feature map and its head;
- ``optimizer.py``: the update rule (learning rate or optax optimizer; or learning rate or preconditioner and
  coefficient for an update linear in the gradient), optimizer states, preconditioners;
- ``memory.py``: the memory budget, the estimates of what a result needs, :class:`MemoryBudgetError`;
- ``step.py``: :func:`validate_step`, the one-step analyses' arguments;
- ``kernels.py``: :func:`validate_kernel`, :func:`check_kernel_values` and :func:`check_kernel_options`, the
  kernels' arguments and options.
"""

from ldjax._src.checks.arrays import batch_size as batch_size
from ldjax._src.checks.arrays import check_batch as check_batch
from ldjax._src.checks.arrays import check_finite as check_finite
from ldjax._src.checks.arrays import check_finite_values as check_finite_values
from ldjax._src.checks.arrays import check_ids as check_ids
from ldjax._src.checks.arrays import check_params as check_params
from ldjax._src.checks.arrays import check_positive as check_positive
from ldjax._src.checks.arrays import check_same_examples as check_same_examples
from ldjax._src.checks.arrays import check_unit_interval as check_unit_interval
from ldjax._src.checks.arrays import concrete as concrete
from ldjax._src.checks.arrays import example_shape as example_shape
from ldjax._src.checks.arrays import params_dtype as params_dtype
from ldjax._src.checks.arrays import precision_scope as precision_scope
from ldjax._src.checks.arrays import shape_signature as shape_signature
from ldjax._src.checks.kernels import check_kernel_options as check_kernel_options
from ldjax._src.checks.kernels import check_kernel_values as check_kernel_values
from ldjax._src.checks.kernels import validate_kernel as validate_kernel
from ldjax._src.checks.memory import DEFAULT_MEMORY_FRACTION as DEFAULT_MEMORY_FRACTION
from ldjax._src.checks.memory import MemoryBudgetError as MemoryBudgetError
from ldjax._src.checks.memory import array_bytes as array_bytes
from ldjax._src.checks.memory import check_feature_terms_memory as check_feature_terms_memory
from ldjax._src.checks.memory import check_memory as check_memory
from ldjax._src.checks.memory import check_positive_budget as check_positive_budget
from ldjax._src.checks.memory import check_probe_memory as check_probe_memory
from ldjax._src.checks.memory import check_terms_memory as check_terms_memory
from ldjax._src.checks.memory import device_memory as device_memory
from ldjax._src.checks.memory import jacobian_bytes as jacobian_bytes
from ldjax._src.checks.memory import kernel_bytes as kernel_bytes
from ldjax._src.checks.memory import kernel_memory as kernel_memory
from ldjax._src.checks.memory import memory_budget as memory_budget
from ldjax._src.checks.model import check_example_shape as check_example_shape
from ldjax._src.checks.model import check_feature_model as check_feature_model
from ldjax._src.checks.model import check_force as check_force
from ldjax._src.checks.model import check_force_masks as check_force_masks
from ldjax._src.checks.model import check_force_parts as check_force_parts
from ldjax._src.checks.model import check_log_softmax_outputs as check_log_softmax_outputs
from ldjax._src.checks.model import check_loss_target as check_loss_target
from ldjax._src.checks.model import check_model_input as check_model_input
from ldjax._src.checks.model import check_scalar_loss as check_scalar_loss
from ldjax._src.checks.model import check_targets_batch as check_targets_batch
from ldjax._src.checks.model import forward_mode as forward_mode
from ldjax._src.checks.model import logits_shape as logits_shape
from ldjax._src.checks.optimizer import check_gradient_update as check_gradient_update
from ldjax._src.checks.optimizer import check_learning_rate as check_learning_rate
from ldjax._src.checks.optimizer import check_opt_state as check_opt_state
from ldjax._src.checks.optimizer import check_optimizer as check_optimizer
from ldjax._src.checks.optimizer import check_optimizer_hyperparameters as check_optimizer_hyperparameters
from ldjax._src.checks.optimizer import check_preconditioner as check_preconditioner
from ldjax._src.checks.optimizer import check_update_rule as check_update_rule
from ldjax._src.checks.step import validate_step as validate_step
