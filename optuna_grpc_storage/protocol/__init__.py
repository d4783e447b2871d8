"""The wire contract both sides import, and nothing else: the generated v1 code, the version,
the limits a server announces, and the rules every name, request field and journal entry must
follow. The client checks with them before sending (an import names the bad line); the proxy
checks with them before anything touches Redis."""
