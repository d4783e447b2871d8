"""The gRPC side: the servicer, request decoding, error mapping, the shared call wrapper.

    servicer.py  the JournalService handlers
    calls.py     count, time, tag and answer every call (unary, streamed, Session requests)
    errors.py    which status a failure answers with
    decoding.py  undecodable requests answered INVALID_ARGUMENT, for every method
"""
