"""Running the app under uvicorn: in the foreground (`tether serve`) or on a background thread (tests, benchmarks).

Bound to 127.0.0.1 by default: the server is reachable from this machine only unless you choose a host.
"""

from __future__ import annotations

import socket
import threading

from tether.serve.app import create_app
from tether.serve.engine import Engine

LOOPBACK = "127.0.0.1"


def run_server(engine: Engine, host: str = LOOPBACK, port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C); in-flight requests get 5 s to finish, then the server exits."""
    import uvicorn

    uvicorn.run(create_app(engine), host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                timeout_graceful_shutdown=5)


class ServerThread:
    """`with ServerThread(engine) as server:` serves on `server.url` (a free port on 127.0.0.1) until the block ends."""

    def __init__(self, engine: Engine, host: str = LOOPBACK, port: int = 0, log_level: str = "warning"):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(create_app(engine), log_level=log_level, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="tether-uvicorn", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread exited during startup")
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
