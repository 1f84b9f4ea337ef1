"""The ray engine: every served model is its own Ray Serve deployment (``modeldeploy[ray]``).

Each model's replicas run the local registry, batcher and planner for that one model
(:mod:`.deployments`); one ingress deployment builds the same Flask app as the local engine over a
:class:`~modeldeploy.remote.RemoteRegistry` whose clients call the model deployments' handles
(:mod:`.client`). :mod:`.cluster` starts a private Ray on 127.0.0.1 or joins a cluster, and
:mod:`.serve` is ``modeldeploy serve --engine ray``. Nothing outside this package imports Ray.
"""
