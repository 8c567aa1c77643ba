"""`mtrec serve`, `mtrec query` and `mtrec recommend`: the serving half of the command line."""
from __future__ import annotations

import json
import sys

DEFAULT_WEIGHTS = "click=1"


def add_commands(commands) -> None:
    serve = commands.add_parser(
        "serve", help="serve models over TF Serving's gRPC and REST APIs (local server)",
        description="Serve a versioned model directory (BASE/<version>/saved_model.pb) over TF Serving's "
                    "gRPC API (PredictionService, ModelService, health) and REST API. New versions are "
                    "loaded, warmed and swapped in as they appear; a broken one never replaces a good one.")
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-base-path", help="the model's versioned directory (the Pusher's destination)")
    source.add_argument("--model-config-file", help="TF Serving models.config (text ModelServerConfig) instead")
    serve.add_argument("--model-name", default="mtrec", help="name clients ask for (default mtrec)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500; 0: any free port)")
    serve.add_argument("--rest-port", type=int, default=8501, help="REST port (default 8501; 0: no REST)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--version-label", action="append", default=[], metavar="LABEL=VERSION",
                       help="name a version, e.g. stable=1712345678 (repeatable)")
    serve.add_argument("--max-batch-size", type=int, help="refuse larger batches (default 1024; 0: no limit)")
    serve.add_argument("--max-message-bytes", type=int, help="largest gRPC message or REST body (default 64 MiB)")
    serve.add_argument("--poll-seconds", type=float, help="how often to look for new versions (default 1)")
    serve.add_argument("--intra-op-threads", type=int,
                       help="threads of one op (TF Serving's --tensorflow_intra_op_parallelism; default 1)")
    serve.add_argument("--inter-op-threads", type=int,
                       help="threads running requests' ops (TF Serving's --tensorflow_inter_op_parallelism; "
                            "default 2; -1: the thread that took the request)")
    serve.add_argument("--tls-cert", default="", help="PEM certificate: serve gRPC over TLS (with --tls-key)")
    serve.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    serve.add_argument("--request-log-dir", default="",
                       help="log a sample of Predict calls here (TF Serving's PredictionLog), for `mtrec skew`")
    serve.add_argument("--request-log-rate", type=float, default=0.1, help="share of calls logged (default 0.1)")
    serve.add_argument("--enable-batching", action="store_true",
                       help="run concurrent requests as one batch (TF Serving's --enable_batching)")

    def client_flags(p):
        p.add_argument("--target", default="127.0.0.1:8500", help="HOST:PORT of TF Serving's gRPC API")
        p.add_argument("--model-name", default="mtrec")
        version = p.add_mutually_exclusive_group()
        version.add_argument("--version", type=int, help="a specific version (default: the newest)")
        version.add_argument("--label", help="a version label, e.g. stable")
        p.add_argument("--timeout", type=float, default=10.0, help="deadline per call in seconds")
        p.add_argument("--root-cert", help="PEM root certificate: connect with TLS")

    query = commands.add_parser("query", help="ask a TF Serving endpoint for task scores",
                                description="Predict from raw features given as JSON: one row "
                                            "{feature: value}, a list of rows, or columns {feature: [values]}.")
    client_flags(query)
    what = query.add_mutually_exclusive_group(required=True)
    what.add_argument("--json", help="the features, as JSON")
    what.add_argument("--status", action="store_true", help="print every version's state instead")
    what.add_argument("--metadata", action="store_true", help="print the signatures instead")
    query.add_argument("--signature", default="serving_raw",
                       help="serving_raw (tensors, default) or serving_default (sent as tf.Examples)")

    rec = commands.add_parser("recommend", help="top-K items for a user by a blend of task scores",
                              description="Score every candidate item for one user and context and print the "
                                          "top K by sum(weight * task score).")
    client_flags(rec)
    rec.add_argument("--user-json", required=True,
                     help='user and context features, e.g. {"user_id": "u1", "device": "ios", ...}')
    rec.add_argument("--items", required=True, help="candidates: JSON lines of item features (e.g. items.jsonl)")
    rec.add_argument("--weights", default=DEFAULT_WEIGHTS, help=f"TASK=W,... (default {DEFAULT_WEIGHTS})")
    rec.add_argument("-k", type=int, default=10, help="how many to return (default 10)")
    rec.add_argument("--server-side", action="store_true", help="blend in the serving graph (rank signature)")


def _weights(text: str):
    try:
        return {task: float(w) for task, w in (part.split("=") for part in text.split(",") if part)}
    except ValueError:
        raise ValueError(f"--weights {text!r}: expected TASK=NUMBER,... e.g. click=1,like=0.5") from None


def _json(flag: str, text: str):
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{flag} is not valid JSON: {error}") from None


def serve(args) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from mtrec.config import ServingConfig
    from mtrec.serving.manager import model_server_config
    from mtrec.serving.server import serve as run_server

    if args.model_config_file:
        if args.version_label:
            raise ValueError("--version-label goes with --model-base-path; with --model-config-file, "
                             "set version_labels in the file")
        with open(args.model_config_file) as f:
            models = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    else:
        labels = {}
        for item in args.version_label:
            label, _, version = item.partition("=")
            if not label or not version.isdigit():
                raise ValueError(f"--version-label {item!r}: expected LABEL=VERSION, e.g. stable=1712345678")
            labels[label] = int(version)
        models = model_server_config(args.model_name, args.model_base_path, labels)
    overrides = {k: v for k, v in {"max_batch_size": args.max_batch_size, "max_message_bytes": args.max_message_bytes,
                                   "poll_seconds": args.poll_seconds, "intra_op_threads": args.intra_op_threads,
                                   "inter_op_threads": args.inter_op_threads}.items() if v is not None}
    run_server(models, ServingConfig(host=args.host, grpc_port=args.port, rest_port=args.rest_port,
                                     enable_batching=args.enable_batching, tls_cert_file=args.tls_cert,
                                     tls_key_file=args.tls_key, request_log_dir=args.request_log_dir,
                                     request_log_rate=args.request_log_rate, **overrides))


def _client(args):
    from mtrec.serving.client import ServingClient

    certificate = open(args.root_cert, "rb").read() if args.root_cert else None
    return ServingClient(args.target, args.model_name, timeout=args.timeout, root_certificates=certificate,
                         version=args.version, label=args.label)


def query(args) -> None:
    with _client(args) as client:
        if args.status:
            print(json.dumps(client.status(), indent=1))
        elif args.metadata:
            signatures = client.metadata()
            print(json.dumps({name: {"inputs": sorted(s.inputs), "outputs": sorted(s.outputs)}
                              for name, s in signatures.items()}, indent=1))
        else:
            features = _json("--json", args.json)
            outputs = (client.predict_examples(features) if args.signature == "serving_default"
                       else client.predict(features, args.signature))
            print(json.dumps({k: v.tolist() for k, v in outputs.items()}, default=lambda b: b.decode()))


def recommend(args) -> None:
    user = _json("--user-json", args.user_json)
    with open(args.items) as f:
        items = [_json(f"{args.items} line {i + 1}", line) for i, line in enumerate(f) if line.strip()]
    with _client(args) as client:
        ranked = client.recommend(user, items, _weights(args.weights), args.k, server_side=args.server_side)
    tasks = sorted(ranked[0].task_scores) if ranked else []
    print(f"{'rank':>4}  {'item_id':<12} {'score':>8}  " + "  ".join(f"{t:>8}" for t in tasks))
    for i, r in enumerate(ranked, 1):
        print(f"{i:>4}  {str(r.item.get('item_id', '?')):<12} {r.score:8.4f}  "
              + "  ".join(f"{r.task_scores[t]:8.4f}" for t in tasks))


def run(args) -> int:
    """Runs a serving command; a refused call prints its gRPC status and message, exit code 2."""
    import grpc

    try:
        {"serve": serve, "query": query, "recommend": recommend}[args.command](args)
    except grpc.RpcError as error:
        print(f"mtrec {args.command}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    return 0


COMMANDS = ("serve", "query", "recommend")
