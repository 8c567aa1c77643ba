"""Task-loss weighting: how per-task losses become the one loss the optimizer minimizes.

Selected by `model.weighting`. Every scheme exposes `weights()` (the factor on each task loss
now, logged per epoch) and `objective(losses)`; learned schemes update themselves from the
training step (GradNorm) or from the epoch's losses (DWA).

  fixed        the config's task weights.
  uncertainty  Kendall, Gal & Cipolla (CVPR 2018): a learned log-variance s per task,
               loss c * exp(-s) * L + s / 2 (c = 1/2 for regression, 1 otherwise), so noisy
               tasks are down-weighted; at the optimum exp(s) = 2c * L (the noise variance).
  gradnorm     Chen et al. (ICML 2018): weights move so that each task's gradient norm at the
               last shared layer tracks the mean norm times (its relative inverse training
               rate) ** alpha; they are renormalised to sum to the number of tasks.
  dwa          Liu, Johns & Davison (CVPR 2019): weight ~ softmax(L(t-1) / L(t-2) / T) over
               tasks, from the last two epochs' mean losses; equal weights for the first two.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import tensorflow as tf
import tf_keras as keras

from mtrec.config import REGRESSION, TaskConfig


def _state(initial, name: str) -> tf.Variable:
    """A non-trained variable every replica updates to the same value (from all-reduced inputs):
    under tf.distribute, the first replica's update is kept."""
    return tf.Variable(initial, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class Weighting(tf.Module):
    """Fixed weights from the config; the base of the learned schemes."""

    #: GradNorm needs each task's gradient at the shared layer, so a persistent tape.
    needs_task_gradients = False

    def __init__(self, tasks: Sequence[TaskConfig], name: str = "fixed"):
        super().__init__(name=name)
        self.task_names = [t.name for t in tasks]
        self.task_weights = _state([float(t.weight) for t in tasks], "task_weights")

    def weights(self) -> Dict[str, tf.Tensor]:
        return {name: self.task_weights[i] for i, name in enumerate(self.task_names)}

    def objective(self, losses: Dict[str, tf.Tensor]) -> tf.Tensor:
        weights = self.weights()
        return tf.add_n([weights[name] * losses[name] for name in self.task_names])

    @property
    def learned_variables(self) -> List[tf.Variable]:
        """Variables the network's optimizer trains together with the model."""
        return []

    def build(self) -> None:
        """Creates the scheme's own optimizer state, before the first (traced) training step."""

    @tf.autograph.experimental.do_not_convert  # a no-op: nothing for AutoGraph to convert
    def after_step(self, losses: Dict[str, tf.Tensor], tape: tf.GradientTape, shared: List[tf.Variable]) -> None:
        """Called in every training step after the model update."""

    def on_epoch_end(self, epoch: int, losses: Dict[str, float]) -> None:
        """Called with the epoch's mean training loss per task."""


class Uncertainty(Weighting):
    def __init__(self, tasks: Sequence[TaskConfig]):
        super().__init__(tasks, name="uncertainty")
        self.log_variances = tf.Variable(tf.zeros(len(tasks)), name="log_variances")
        self._scale = tf.constant([0.5 if t.type == REGRESSION else 1.0 for t in tasks])

    def weights(self):
        factors = self._scale * tf.exp(-self.log_variances)
        return {name: factors[i] for i, name in enumerate(self.task_names)}

    def objective(self, losses):
        # Per replica: gradients add up over replicas, so the regulariser is split among them.
        return super().objective(losses) + tf.nn.scale_regularization_loss(0.5 * tf.reduce_sum(self.log_variances))

    @property
    def learned_variables(self):
        return [self.log_variances]


class GradNorm(Weighting):
    needs_task_gradients = True

    def __init__(self, tasks: Sequence[TaskConfig], alpha: float, learning_rate: float):
        super().__init__(tasks, name="gradnorm")
        self.task_weights.assign(tf.ones(len(tasks)))
        self.alpha = alpha
        self.initial_losses = _state(tf.zeros(len(tasks)), "initial_losses")
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.grad_norms = _state(tf.zeros(len(tasks)), "grad_norms")

    def build(self):
        self.optimizer.build([self.task_weights])

    def after_step(self, losses, tape, shared):
        # Under tf.distribute each replica holds its share of the global losses and gradients:
        # summed over replicas, every replica computes the single-device update.
        replica = tf.distribute.get_replica_context()
        loss = replica.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack([losses[name] for name in self.task_names]))
        first_step = tf.reduce_all(self.initial_losses == 0.0)  # no `if`: no sync point inside a cond
        self.initial_losses.assign(tf.where(first_step, tf.maximum(loss, 1e-8), self.initial_losses))
        # ||d(L_i)/dW|| per task at the shared layer; the weighted norm G_i = w_i * that.
        gradients = [[g for g in tape.gradient(losses[name], shared) if g is not None] for name in self.task_names]
        gradients = replica.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        norms = tf.stack([tf.linalg.global_norm(g) for g in gradients])
        weighted = self.task_weights * norms
        self.grad_norms.assign(weighted)
        ratio = loss / self.initial_losses
        relative_rate = ratio / tf.reduce_mean(ratio)
        target = tf.stop_gradient(tf.reduce_mean(weighted) * relative_rate ** self.alpha)
        # d/dw_i of sum |w_i n_i - target_i|, with the target held constant as in the paper.
        gradient = tf.sign(weighted - target) * norms
        # The optimizer sums gradients over replicas; each replica holds the whole one.
        self.optimizer.apply_gradients([(gradient / replica.num_replicas_in_sync, self.task_weights)])
        positive = tf.maximum(self.task_weights, 1e-3)
        self.task_weights.assign(positive * len(self.task_names) / tf.reduce_sum(positive))


class DynamicWeightAverage(Weighting):
    def __init__(self, tasks: Sequence[TaskConfig], temperature: float):
        super().__init__(tasks, name="dwa")
        self.task_weights.assign(tf.ones(len(tasks)))
        self.temperature = temperature
        self.history: List[List[float]] = []

    def on_epoch_end(self, epoch, losses):
        self.history.append([float(losses[name]) for name in self.task_names])
        if len(self.history) >= 2:
            rate = tf.constant(self.history[-1]) / tf.maximum(tf.constant(self.history[-2]), 1e-12)
            self.task_weights.assign(len(self.task_names) * tf.nn.softmax(rate / self.temperature))


def make_weighting(scheme: str, tasks: Sequence[TaskConfig], alpha: float = 1.5, temperature: float = 2.0,
                   learning_rate: float = 0.01) -> Weighting:
    """The weighting `scheme` (one of config.WEIGHTINGS) for `tasks`."""
    if scheme == "fixed":
        return Weighting(tasks)
    if scheme == "uncertainty":
        return Uncertainty(tasks)
    if scheme == "gradnorm":
        return GradNorm(tasks, alpha, learning_rate)
    if scheme == "dwa":
        return DynamicWeightAverage(tasks, temperature)
    raise ValueError(f"unknown weighting {scheme!r}; known: fixed, uncertainty, gradnorm, dwa")
