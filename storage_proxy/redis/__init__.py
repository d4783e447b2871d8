"""Redis: where the journals live.

    urls.py     --redis-url forms (standalone, Sentinel, Cluster)
    client.py   the instrumented asyncio clients for each topology
    scripts.py  the Lua scripts of lua/, loaded and named by file
    store.py    the journal operations, each one script or command
"""
