"""The proxy's processes.

    supervisor.py      `serve`: embedded Redis, one server process or a supervised group
    port_lock.py       one proxy per port: the port's lock, and who holds it
    serve.py           one server process: start, serve, drain
    health.py          gRPC health that follows Redis
    cpus.py            how many server processes `--workers 0` means
    embedded_redis.py  a redis-server child (the embedded Redis, and the tests' Redis)
"""
