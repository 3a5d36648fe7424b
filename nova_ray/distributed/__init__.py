"""Everything Ray: connect (local or a cluster), batch items into tasks, the LSTM actor, retries.

Nothing else in nova-ray imports ray. The tasks call exactly the engine functions of the local path.
`address`: a cluster's address checked; `session`: starting, joining and stopping Ray; `batching`:
items into tasks; `worker`: what runs on the workers; `lstm_run`: the LSTM's actor or task;
`backend`: the run's fan-out; `probe`: the doctor's check.
"""

from .address import AddressError, HeadUnreachable, check_address, reachable_cluster
from .backend import RayBackend
from .batching import SEARCH_COST, estimate_cost, make_batches
from .probe import probe_ray
from .session import local_cpus, wait_for_shutdown
from .worker import THREAD_ENV

__all__ = [
    "THREAD_ENV",
    "SEARCH_COST",
    "AddressError",
    "HeadUnreachable",
    "RayBackend",
    "check_address",
    "estimate_cost",
    "local_cpus",
    "make_batches",
    "probe_ray",
    "reachable_cluster",
    "wait_for_shutdown",
]
