"""Start a private Ray on this machine, or join a cluster; put Serve's HTTP proxy on an address.

A private Ray puts its node (and Serve's proxy, unless ``--host`` says otherwise) on 127.0.0.1,
with the dashboard and usage reporting off and its CPUs pinned (``server.ray_num_cpus``, else
those this process may use). Some of Ray's own daemons still listen on every interface, which no
Ray 2.60 setting changes: docs/deploy.md says to keep such a machine behind a firewall.
"""

from __future__ import annotations

import logging
import os
import socket

import ray
from ray import serve

from ..config import Config

log = logging.getLogger(__name__)

NAMESPACE = "modeldeploy"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def start_ray(config: Config) -> bool:
    """Connect to ``server.ray_address``, or start a private Ray; True when this process started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = config.server.ray_address
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING)
        log.info("joined the Ray cluster at %s", address)
        return False
    cpus = config.server.ray_num_cpus or len(os.sched_getaffinity(0))
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             namespace=NAMESPACE, logging_level=logging.WARNING)
    log.info("started a private Ray on 127.0.0.1 with %d CPU(s)", cpus)
    return True


def start_http(host: str, port: int) -> int:
    """Serve's HTTP proxy on ``host:port`` (0: a free port, chosen here); returns the port.

    A wildcard host puts a proxy on every node (a load balancer spreads clients over them); a
    specific address exists on one node only, so the proxy runs on the head node alone.
    """
    if port == 0:
        port = free_port(host)
    location = "EveryNode" if host in WILDCARD_HOSTS else "HeadOnly"
    serve.start(proxy_location=location, http_options={"host": host, "port": port})
    return port


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
