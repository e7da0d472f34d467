"""How a fake HTTP server of the tests runs as a process: on 127.0.0.1, "ready" on stdout once it
listens (what the tests wait for), until SIGTERM or SIGINT."""
import signal
import threading
from http.server import ThreadingHTTPServer


def serve_until_stopped(port: int, handler) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print("ready", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
