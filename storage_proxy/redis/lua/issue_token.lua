-- Store a new token's record and its id entry together (one slot: works on a Redis Cluster
-- without a cross-node transaction). KEYS: token record, id index. ARGV: record, id, digest.
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
