"""--track, --track-uri and --track-experiment: the same flags for `ablations train` and `ablations grid`."""

from __future__ import annotations

import argparse
from functools import partial

from ablations.cli.types import checked
from ablations.config import check_name
from ablations.tracking.mapping import TRACKERS


def add_track_arguments(parser: argparse.ArgumentParser, *, tensorboard_dir: str, experiment: str) -> None:
    group = parser.add_argument_group("tracking (optional extras: mlflow, tensorboard)")
    group.add_argument("--track", default=None, choices=TRACKERS, type=checked(partial(check_name, "tracker",
                                                                                        choices=TRACKERS)),
                       help="also log every epoch, as it ends, to MLflow or TensorBoard [off]")
    group.add_argument("--track-uri", default=None, metavar="URI|DIR",
                       help="mlflow: tracking URI such as sqlite:///mlflow.db or http://HOST:5000 "
                            f"[$MLFLOW_TRACKING_URI, else MLflow's default]; tensorboard: log folder [{tensorboard_dir}]")
    group.add_argument("--track-experiment", default=None, metavar="NAME",
                       help=f"mlflow: the experiment [{experiment}]")
