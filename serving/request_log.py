"""Request logging in TF Serving's format: a sample of the Predict calls, each a `PredictionLog`
(its request and response) in TFRecord files under a directory, what TF Serving's own request
logger writes and what `mtrec skew` (`mtrec.serving.skew`) reads back.
"""
from __future__ import annotations

import os
import random
import threading
import time

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

LOG_PREFIX = "requests"


class RequestLogger:
    """Writes `rate` of the calls it is shown (0 < rate <= 1) to `directory`, one file per server
    start; each record is flushed, so the file can be read while the server runs."""

    def __init__(self, directory: str, rate: float, seed=None):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"request log sampling rate {rate}: must be in (0, 1]")
        tf.io.gfile.makedirs(directory)
        self.path = os.path.join(directory, f"{LOG_PREFIX}-{int(time.time() * 1000)}-{os.getpid()}.tfrecord")
        self.rate, self._random, self._lock = rate, random.Random(seed), threading.Lock()
        self._writer = tf.io.TFRecordWriter(self.path)
        self.logged = 0

    def predict(self, request, response) -> None:
        with self._lock:
            if self._random.random() >= self.rate:
                return
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(
                request=request, response=response))
            self._writer.write(log.SerializeToString())
            self._writer.flush()
            self.logged += 1

    def close(self) -> None:
        with self._lock:
            self._writer.close()
