# Starts moto_server with every request handled under one lock.
#
# moto_server serves requests on threads, but moto's DynamoDB
# TransactWriteItems backs up the whole table and restores it when a
# condition fails, so a failed transaction can erase writes another thread
# made meanwhile, and concurrent requests sometimes crash with a 500. Real
# DynamoDB applies each request atomically; one request at a time gives the
# same guarantee, while clients still race between their requests.
import sys
import threading

import moto.server as server

_run_simple = server.run_simple
_lock = threading.Lock()


def _serial(host, port, app, **kwargs):
    def locked(environ, start_response):
        with _lock:
            return list(app(environ, start_response))

    _run_simple(host, port, locked, **kwargs)


server.run_simple = _serial
sys.exit(server.main(sys.argv[1:]))
