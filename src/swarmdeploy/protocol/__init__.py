"""Wire messages, the task descriptor schema and the task state table.

Nothing in this package performs I/O: it turns bytes and documents into typed values and
checks state transitions. Transports, daemons and the manager feed it data.
"""
