"""cirrus_worker: a diffusion worker for cirrus's job broker (docs/protocol.md, worker/README.md).

`python3 -m cirrus_worker --connect tcp://broker:7790 --backend composite`
"""

__version__ = "0.1.0"
