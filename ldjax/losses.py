"""Losses of logits with their closed-form forces G = ∂L/∂z (``*_g``)."""

from ldjax._src.losses._base import bind
from ldjax._src.losses._base import checks_target
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.losses._base import token_log_probs
from ldjax._src.losses._base import with_target_check
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.losses.classification import cross_entropy_g
from ldjax._src.losses.classification import smooth_labels
from ldjax._src.losses.classification import soft_cross_entropy
from ldjax._src.losses.classification import soft_cross_entropy_g
from ldjax._src.losses.policy import PolicyTarget
from ldjax._src.losses.policy import group_advantages
from ldjax._src.losses.policy import grpo
from ldjax._src.losses.policy import grpo_g
from ldjax._src.losses.policy import simko
from ldjax._src.losses.policy import simko_fn
from ldjax._src.losses.policy import simko_token_terms
from ldjax._src.losses.sequence import PreferenceTarget
from ldjax._src.losses.sequence import SequenceTarget
from ldjax._src.losses.sequence import dpo
from ldjax._src.losses.sequence import dpo_fn
from ldjax._src.losses.sequence import dpo_g
from ldjax._src.losses.sequence import ipo
from ldjax._src.losses.sequence import ipo_fn
from ldjax._src.losses.sequence import ipo_g
from ldjax._src.losses.sequence import next_token_target
from ldjax._src.losses.sequence import sequence_log_prob
from ldjax._src.losses.sequence import sft
from ldjax._src.losses.sequence import sft_g
from ldjax._src.losses.sequence import slic
from ldjax._src.losses.sequence import slic_fn
from ldjax._src.losses.sequence import slic_g
from ldjax._src.typing import Loss

__all__ = (
    "Loss",
    "bind",
    "checks_target",
    "softmax_minus_one_hot",
    "with_target_check",
    "cross_entropy",
    "cross_entropy_g",
    "smooth_labels",
    "soft_cross_entropy",
    "soft_cross_entropy_g",
    "PreferenceTarget",
    "SequenceTarget",
    "dpo",
    "dpo_fn",
    "dpo_g",
    "ipo",
    "ipo_fn",
    "ipo_g",
    "next_token_target",
    "sequence_log_prob",
    "sft",
    "sft_g",
    "slic",
    "slic_fn",
    "slic_g",
    "token_log_probs",
    "PolicyTarget",
    "group_advantages",
    "grpo",
    "grpo_g",
    "simko",
    "simko_fn",
    "simko_token_terms",
)
