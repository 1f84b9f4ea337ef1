"""The registry of a further front process (``server.fronts``): the models' workers, reached, never started.

The first front process starts, watches and restarts the workers (:class:`.ProcessRegistry`);
every other front reaches the same workers through its own connections (a
:class:`.client.WorkerLink` per model), so each front's threads send straight to the worker, whose
batcher gathers what all the fronts send. Statuses come from the workers' own reports, as in the
first front, and operators' loads and unloads are refused on every front alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Config, ModelConfig
from ..errors import ModelNotReadyError
from ..plugins import Catalog, ModelEntry
from ..registry import FAILED, ModelStatus, ServedModel
from ..remote import RemoteRegistry, ReplicaReport
from . import _ProcessServedModel, several_fronts_error
from .client import WorkerAddress, WorkerLink

#: A front's request ids start at its index shifted this far, so ids from different fronts never
#: meet in a worker (a cancel names the request it cancels).
REQUEST_ID_BITS = 48


class AttachedRegistry(RemoteRegistry):
    """The models served by the workers at ``addresses``, as front number ``front`` (1 and up) sees them."""

    engine = "process"

    def __init__(self, config: Config, addresses: Sequence[WorkerAddress], front: int,
                 catalog: Catalog | None = None) -> None:
        links = {address.name: _AttachedLink(config, address, front << REQUEST_ID_BITS) for address in addresses}
        super().__init__(config, links, catalog)

    def _new_served_model(self, entry: ModelEntry, config: ModelConfig) -> ServedModel:
        return _ProcessServedModel(entry, config, self._clients[entry.name])

    def load_model(self, name: str, source: str | None = None, sha256: str | None = None) -> ModelStatus:
        """Refused, as on the first front (an unknown model is still a 404)."""
        self._installed(name)
        raise several_fronts_error(self.config.server.fronts)

    def unload_model(self, name: str) -> None:
        """Refused, as on the first front (an unknown model is still a 404)."""
        if name not in self._models:
            self.catalog.entry(name)
            return
        raise several_fronts_error(self.config.server.fronts)


class _AttachedLink(WorkerLink):
    """A worker that does not answer is failed, saying so: only the first front knows its exit code
    (and logs it), and it starts the worker again."""

    def report(self) -> ReplicaReport:
        try:
            return super().report()
        except ModelNotReadyError as exc:
            return ReplicaReport(ModelStatus(
                FAILED, f"the worker process of model {self.name!r} does not answer ({exc})",
                fix="the server log says why it stopped; the first front process starts it again"))
