"""`modelplane-server --headless`: a worker node of a model split across nodes; no HTTP server.

One replica of a model too big for one node is a group of pods (a LeaderWorkerSet): the
leader runs the whole server with `--nnodes N --node-rank 0`, every other pod runs this
mode with its `--node-rank`, the leader's `--master-addr` and the same engine flags. vLLM's
own `vllm serve --headless` does the work (its multiprocessing executor joins the leader's
torch.distributed group); modelplane only gives it the same flags, environment and bundled
model the leader gets, so both roles run one command.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("modelplane.server")


def check_worker_args(args: argparse.Namespace) -> None:
    """A headless process only makes sense as a non-leader node of a multi-node engine."""
    if args.nnodes < 2:
        raise ValueError("--headless serves a worker node: it needs --nnodes 2 or more")
    if not 1 <= args.node_rank < args.nnodes:
        raise ValueError(
            f"--headless needs --node-rank between 1 and {args.nnodes - 1} "
            f"(node rank 0 is the leader, which serves HTTP); got {args.node_rank}"
        )


def run_worker(args: argparse.Namespace) -> None:
    """Hand the parsed flags to vLLM's headless launcher; returns when the leader goes away."""
    check_worker_args(args)
    from vllm.entrypoints.cli.serve import run_headless

    from modelplane.server.default_model import fill_in_bundled_model

    fill_in_bundled_model(args)
    # vLLM's serve parser adds this frontend flag; in headless mode it is always 0.
    args.api_server_count = 0
    logger.info(
        "Headless worker: node %d of %d, leader %s:%d, model %s",
        args.node_rank,
        args.nnodes,
        args.master_addr,
        args.master_port,
        args.model,
    )
    run_headless(args)
