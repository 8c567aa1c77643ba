"""Trains any architecture on its tasks: one objective per task, combined by a weighting scheme.

`MultiTaskModel` wraps an architecture's functional network. Batches are (features, labels) with
`labels` keyed by label name; each task's objective turns them into its loss:

  pointwise    binary/regression output against its label; a conditional task (`given`) is
               weighted by that label, so like-given-click learns from clicked impressions only.
  entire space ESMM's post-click tasks: `<task>_ctcvr` (pCTR x pCVR) against label x given label,
               on every impression.
  retrieval    TFRS in-batch softmax over the query and item embeddings, with the sampling
               probability correction when item frequencies are known.

The reported `loss` is the sum of task losses with the config's weights, comparable across epochs
whatever the weighting, so early stopping watches `val_loss`; `<task>_weight` is the weight the
scheme applied. Only the network is exported: the wrapper exists for training.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from mtrec.config import RETRIEVAL, PipelineConfig, TaskConfig
from mtrec.models import build_model
from mtrec.models.esmm import CTCVR_SUFFIX, entire_space_tasks
from mtrec.models.layers import FusedEmbedding, TextTables
from mtrec.models.two_tower import ITEM_EMBEDDING, QUERY_EMBEDDING
from mtrec.models.weighting import Weighting, make_weighting
from mtrec.transformed import dense_inputs, presence_name

_NONE = keras.losses.Reduction.NONE


def _presence(labels, label: str) -> tf.Tensor:
    """1 where the example has `label` (Transform's `<label>__present`; all ones without it)."""
    present = labels.get(presence_name(label))
    return tf.ones_like(labels[label]) if present is None else present


def example_weight(task: TaskConfig, labels, entire_space: bool = False) -> tf.Tensor:
    """A task's weight per example: 0 where its label (or its `given` label) is missing; times the
    `given` label for a conditional task, except in entire space (ESMM), which trains on every
    impression. Training and the exported `transform_features` signature both use it."""
    weight = _presence(labels, task.label)
    if task.given:
        weight = weight * _presence(labels, task.given)
        if not entire_space:
            weight = weight * labels[task.given]
    return weight


def _average(per_example: tf.Tensor) -> tf.Tensor:
    """Mean over the global batch, so gradients add up correctly across replicas: what
    `tf.nn.compute_average_loss` computes, without the checks it traces into every step (an Assert
    and 13 other ops per task: 95 of the 966 ops of a five-task train step)."""
    per_example = tf.reshape(per_example, [-1])
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), tf.cast(tf.size(per_example) * replicas, per_example.dtype))


class PointwiseObjective:
    def __init__(self, task: TaskConfig, output: Optional[str] = None, entire_space: bool = False):
        self.task, self.output, self.entire_space = task, output or task.name, entire_space
        self.loss_fn = keras.losses.get(task.loss)  # per-example: loss functions reduce only the last axis
        if isinstance(self.loss_fn, keras.losses.Loss):
            self.loss_fn.reduction = _NONE

    def __call__(self, features, labels, outputs) -> tf.Tensor:
        label = labels[self.task.label]
        if self.entire_space:
            label = label * labels[self.task.given]
        weight = example_weight(self.task, labels, self.entire_space)
        return _average(self.loss_fn(label, outputs[self.output]) * tf.reshape(weight, [-1]))


class RetrievalObjective:
    """TFRS's in-batch softmax (`tfrs.tasks.Retrieval`'s loss) with its sampling-probability
    correction and accidental-hit removal, from TFRS's own layers.

    The task itself is not called: it scores the positives through a dense identity label matrix
    (a third of a 1024-batch step on CPU, where the diagonal as sparse labels gives the same loss)
    and takes len() of tensors, which only AutoGraph can trace."""

    def __init__(self, task: TaskConfig, item_probability: Optional[np.ndarray] = None, item_key: str = "item_id"):
        self.task, self.item_key = task, item_key
        self.item_probability = None if item_probability is None else tf.constant(item_probability, tf.float32)
        self.correct_sampling = tfrs.layers.loss.SamplingProbablityCorrection()
        self.remove_accidental_hits = tfrs.layers.loss.RemoveAccidentalHits()

    def __call__(self, features, labels, outputs) -> tf.Tensor:
        items = tf.reshape(features[self.item_key], [-1])
        scores = tf.linalg.matmul(outputs[QUERY_EMBEDDING], outputs[ITEM_EMBEDDING], transpose_b=True)
        if self.item_probability is not None:
            scores = self.correct_sampling(scores, tf.gather(self.item_probability, items))
        positives = tf.range(tf.shape(scores)[0])  # each query's own item, on the diagonal
        scores = self.remove_accidental_hits(tf.one_hot(positives, tf.shape(scores)[1]), scores, items)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(positives, scores)
        if self.task.given:
            loss = loss * tf.reshape(example_weight(self.task, labels), [-1])
        return _average(loss)


def objectives_for(config: PipelineConfig, item_probability: Optional[np.ndarray] = None) -> list:
    chained = entire_space_tasks(config.tasks) if config.model.architecture == "esmm" else {}
    objectives = []
    for task in config.tasks:
        if task.type == RETRIEVAL:
            objectives.append(RetrievalObjective(task, item_probability))
        elif task.name in chained:
            objectives.append(PointwiseObjective(task, task.name + CTCVR_SUFFIX, entire_space=True))
        else:
            objectives.append(PointwiseObjective(task))
    return objectives


def _layers(model: keras.Model):
    """Every layer, nested models' included (the two-tower model nests its towers)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def shared_variables(network: keras.Model) -> List[tf.Variable]:
    """The last layer every task depends on, where GradNorm measures gradient norms: the shared
    bottom's last Dense, else the last DCN cross layer, else the embedding layers (two-tower: the
    towers' output layers)."""
    layers = {layer.name: layer for layer in _layers(network)}
    if "shared_bottom" in layers:
        return layers["shared_bottom"]._layers[-1].trainable_variables
    crosses = sorted((n for n in layers if n.startswith("cross_") and n[6:].isdigit()), key=lambda n: int(n[6:]))
    if crosses:
        return layers[crosses[-1]].trainable_variables
    towers = [name for name in layers if name.endswith("_tower_embedding")]
    chosen = towers or [name for name, layer in layers.items() if isinstance(layer, FusedEmbedding)]
    return [v for name in chosen for v in layers[name].trainable_variables]


class MultiTaskModel(keras.Model):
    """Custom train/test steps over per-task objectives; see the module docstring."""

    def __init__(self, network: keras.Model, tasks: Sequence[TaskConfig], objectives: list, weighting: Weighting,
                 **kwargs):
        super().__init__(name=f"{network.name}_trainer", **kwargs)
        # Every value a step returns is already global (metric results, task weights every replica
        # holds alike): take one replica's, where Keras would sum them.
        self.distribute_reduction_method = "first"
        self.network, self.tasks, self.objectives, self.weighting = network, list(tasks), objectives, weighting
        self.shared = shared_variables(network) if weighting.needs_task_gradients else []
        # The config's task weights, for the reported loss: a variable, so `retask` can change them.
        self.reported_weights = tf.Variable([float(t.weight) for t in self.tasks], trainable=False,
                                            name="reported_weights",
                                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_losses = {t.name: keras.metrics.Mean(name=f"{t.name}_loss") for t in self.tasks}
        self.task_metrics = {}
        for t in self.tasks:
            if t.kind.keras_metric:
                self.task_metrics[t.name] = getattr(keras.metrics, t.kind.keras_metric)(name=f"{t.name}_{t.kind.short}")

    def call(self, features, training=None):
        return self.network(features, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.task_losses.values(), *self.task_metrics.values()]

    def compute_task_losses(self, features, labels, outputs) -> Dict[str, tf.Tensor]:
        return {t.name: objective(features, labels, outputs) for t, objective in zip(self.tasks, self.objectives)}

    def _update_losses(self, losses) -> Dict[str, tf.Tensor]:
        # Task losses are this replica's share of the global-batch mean; times the replicas, each
        # is its own batch's mean, and the metrics' mean over replicas is the global one.
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        self.loss_tracker.update_state(
            replicas * tf.add_n([self.reported_weights[i] * losses[t.name] for i, t in enumerate(self.tasks)]))
        for t in self.tasks:
            self.task_losses[t.name].update_state(replicas * losses[t.name])
        return {m.name: m.result() for m in (self.loss_tracker, *self.task_losses.values())}

    # Keras reads every metric's result eagerly at each epoch's end, through AutoGraph, which spent
    # 0.3-0.5 s of a fit's first epoch converting AUC's and Mean's `result` (no control flow on tensors).
    @tf.autograph.experimental.do_not_convert
    def get_metrics_result(self):
        return super().get_metrics_result()

    def _update_task_metrics(self, labels, outputs) -> Dict[str, tf.Tensor]:
        for t in self.tasks:
            if t.name in self.task_metrics:
                self.task_metrics[t.name].update_state(labels[t.label], outputs[t.name],
                                                       sample_weight=example_weight(t, labels))
        return {m.name: m.result() for m in self.task_metrics.values()}

    def retask(self, tasks: Sequence[TaskConfig], network_weights: List[np.ndarray]) -> None:
        """Back to `network_weights` and a fresh optimizer, to train with `tasks`' weights (the same
        tasks, weighted otherwise): the single-task baselines share one model and its traced steps.
        Fixed weighting only (a learned scheme's state would carry over)."""
        if type(self.weighting) is not Weighting or [t.name for t in tasks] != [t.name for t in self.tasks]:
            raise ValueError("retask needs fixed weighting and the same tasks")
        self.tasks = list(tasks)
        weights = [float(t.weight) for t in tasks]
        self.weighting.task_weights.assign(weights)
        self.reported_weights.assign(weights)
        self.network.set_weights(network_weights)
        for variable in self.optimizer.variables():
            variable.assign(tf.zeros_like(variable))

    # Keras runs `steps_per_execution` steps per call in a loop that AutoGraph traces twice (once
    # to learn what the loop carries), and the step's trace is most of a short fit's cost. The loop
    # calls Keras's one-step function instead, so its second call reuses the first trace (under
    # MirroredStrategy too, where the step is traced once per replica). That function is traced
    # without AutoGraph: converting Keras's step code (no control flow on tensors) cost ~1.5 s of
    # each fit's first epoch.
    def make_train_function(self, force=False):
        return self._loop_of(super().make_train_function, "train_function", force)

    def make_test_function(self, force=False):
        return self._loop_of(super().make_test_function, "test_function", force)

    def _loop_of(self, make_one_step, name: str, force: bool):
        if getattr(self, name) is not None and not force:
            return getattr(self, name)
        if self.run_eagerly or self._cluster_coordinator or self.autotune_steps_per_execution:
            return make_one_step(force)
        steps = self._steps_per_execution
        many = 1 if steps is None else int(steps.numpy())
        if steps is not None:
            steps.assign(1)
        try:
            one_step = tf.function(make_one_step(True).python_function, reduce_retracing=True, autograph=False)
        finally:
            if steps is not None:
                steps.assign(many)
        if name == "train_function":
            self.train_tf_function = one_step  # the graph TensorBoard shows
        if many == 1:
            setattr(self, name, one_step)
            return one_step

        @tf.function(reduce_retracing=True)
        def loop(iterator):
            for _ in tf.range(steps):
                outputs = one_step(iterator)
            return outputs

        setattr(self, name, loop)
        return loop

    # The steps are traced without AutoGraph: they have no Python control flow on tensors, and
    # AutoGraph would convert every layer's call.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        features, labels = data
        variables = self.network.trainable_variables + self.weighting.learned_variables
        with tf.GradientTape(persistent=self.weighting.needs_task_gradients) as tape:
            outputs = self.network(features, training=True)
            losses = self.compute_task_losses(features, labels, outputs)
            objective = self.weighting.objective(losses)
            if self.network.losses:
                objective += tf.nn.scale_regularization_loss(tf.add_n(self.network.losses))
        # minimize, not tape.gradient: under mixed_float16 the LossScaleOptimizer scales the loss.
        self.optimizer.minimize(objective, variables, tape=tape)
        self.weighting.after_step(losses, tape, self.shared)
        del tape
        # Losses only: the task metrics (AUC's confusion counts over 200 thresholds per task) would
        # run in every step, and they mean something where they are measured, on the validation
        # split at each epoch's end (`val_<task>_auc`) and by the Evaluator.
        logs = self._update_losses(losses)
        logs.update({f"{name}_weight": w for name, w in self.weighting.weights().items()})
        return logs

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        features, labels = data
        outputs = self.network(features, training=False)
        return {**self._update_losses(self.compute_task_losses(features, labels, outputs)),
                **self._update_task_metrics(labels, outputs)}


class WeightingCallback(keras.callbacks.Callback):
    """Feeds each epoch's mean task losses to the weighting scheme (DWA) and keeps the weights
    applied in every epoch: `history` is a list of {task: weight}."""

    def __init__(self, weighting: Weighting):
        super().__init__()
        self.weighting, self.history = weighting, []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.history.append({name: float(logs.get(f"{name}_weight", np.nan)) for name in self.weighting.task_names})
        self.weighting.on_epoch_end(epoch, {name: logs[f"{name}_loss"] for name in self.weighting.task_names})


def build_network(config: PipelineConfig, vocab_sizes: Dict[str, int], text: Optional[TextTables] = None
                  ) -> keras.Model:
    """The configured architecture's functional network (what is exported)."""
    # Built without AutoGraph: Keras would convert the call of every layer defined outside Keras
    # (ours, TFRS's), and AutoGraph recurses into tf_keras, which its allowlist does not name.
    return tf.autograph.experimental.do_not_convert(build_model)(
        config.model.architecture, vocab_sizes, dense_inputs(config.features), config.tasks, config.model, text)


def build_multitask_model(config: PipelineConfig, vocab_sizes: Dict[str, int],
                          item_probability: Optional[np.ndarray] = None, text: Optional[TextTables] = None
                          ) -> MultiTaskModel:
    """The configured architecture and weighting, compiled with (legacy) Adam. Build it inside the
    distribution strategy's scope."""
    network = build_network(config, vocab_sizes, text)
    weighting = make_weighting(config.model.weighting, config.tasks, alpha=config.model.gradnorm_alpha,
                               temperature=config.model.dwa_temperature, learning_rate=config.training.learning_rate)
    model = MultiTaskModel(network, config.tasks, objectives_for(config, item_probability), weighting)
    # Keras's legacy Adam: one fused ResourceApplyAdam kernel per variable, where the new optimizer
    # runs a dozen small ops per variable (bench/README, Training throughput, measures it together
    # with the stacked layers).
    model.compile(optimizer=keras.optimizers.legacy.Adam(config.training.learning_rate),
                  steps_per_execution=config.training.steps_per_execution, jit_compile=config.training.jit_compile)
    # Every variable exists before the first step: a tf.function that creates variables while it
    # is traced is traced twice, and the training step's trace is most of a short fit's cost.
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # under mixed_float16's loss scaling
    optimizer._create_all_weights(network.trainable_variables + weighting.learned_variables)
    weighting.build()
    return model
