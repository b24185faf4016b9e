"""What the fork server of the local workers imports before it forks them
(:func:`~aanntwin.studies.pools.worker_context`): torch, ``torch._dynamo`` (which the first
optimizer a process builds imports: ~100 MB private in each training worker otherwise, shared
with the server this way) and the modules of the study tasks, then ``gc.freeze()``. The objects
made so far leave the cyclic collector's reach, so a worker's collections do not write to the
pages it shares with the server (each write would copy a page: ~45 MB per worker on an MNIST
sweep). Imported for these effects only, in the fork server.
"""

import gc

import torch._dynamo  # noqa: F401 (preloaded: the first optimizer a worker builds imports it)

from . import architecture, noise_sweep, quantization, specs  # noqa: F401 (preloaded)

gc.collect()
gc.freeze()
