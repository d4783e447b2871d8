"""storage_proxy: a stateless gRPC server for Optuna journals, backed by Redis.

    cli.py, config.py   `storage-proxy` commands and the settings of `serve`
    rpc/                the servicer, error mapping, the call wrapper, request decoding
    group_commit.py     appends to one journal batched into one script call
    reads.py            reads from the cache, else Redis
    cache.py            recent entries of each journal, kept current by pub/sub
    auth.py             tokens and the namespace they map to
    metrics.py, logs.py Prometheus metrics and log lines
    redis/              URLs, clients, the Lua scripts and the journal store
    process/            serve + drain, the supervisor, embedded Redis
    testing.py          a throwaway proxy for tests, benchmarks and examples (not used by serve)
"""

from optuna_grpc_storage.protocol.version import __version__

__all__ = ["__version__"]
