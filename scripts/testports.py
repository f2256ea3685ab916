"""Free loopback ports for the test and bench scripts.

The kernel may hand out the same ephemeral port to two bind(0) calls once the first socket
is closed, so a script that asks for several ports could get one twice (two nginx servers
then share a `listen`, and nginx refuses the configuration). free_port() never returns a
port it has already returned in this process.
"""

import socket

_GIVEN = set()


def free_port():
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free loopback port that this script has not used already")
