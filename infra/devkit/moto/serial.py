# Starts moto_server with every DynamoDB request handled under one lock, and
# with DynamoDB transactions that roll back only the items they touch.
#
# moto_server serves requests on threads, but moto's DynamoDB
# TransactWriteItems backs up the whole table and restores it when a
# condition fails, so a failed transaction can erase writes another thread
# made meanwhile, and concurrent requests sometimes crash with a 500. Real
# DynamoDB applies each request atomically; one request at a time gives the
# same guarantee, while clients still race between their requests.
#
# That backup is also a deep copy of the whole table on every transaction,
# which makes each one cost O(table size): a backfill of 25,000 followers
# would take hours. Under the lock nothing else can change the table during
# a transaction, so a copy of the items it touches is enough to roll back.
#
# moto's EventBridge builds each event it delivers to a rule's target from 8
# JSONPath expressions, always the same, and jsonpath_ng builds a new parser
# (its LALR tables, 0.1 s of CPU) for every expression it parses: about a
# second per event delivered. Here each thread builds one parser, and each
# expression is parsed once.
#
# moto finds the backend of every request by listing its own package
# directory and stat-ing each of its ~170 entries (list_of_moto_modules),
# twice per request: a sixth of moto's CPU in the tests. The directory does
# not change while the server runs, so it is listed once.
import copy
import gc
import functools
import sys
import threading

import moto.core.utils as _utils

# moto allocates many short-lived objects per request, and the cyclic
# collector's default thresholds run it every 700 allocations: a tenth of
# moto's CPU in the tests. Its data stays small; collect far less often.
gc.set_threshold(50000, 20, 20)

# camelcase_to_underscores turns each request's and response's member names
# with a regular expression, some 10 times per request: cached, before the
# modules that import it by name are loaded.
_utils.camelcase_to_underscores = functools.lru_cache(maxsize=4096)(_utils.camelcase_to_underscores)

import moto.server as server  # noqa: E402

_run_simple = server.run_simple
_lock = threading.Lock()


def _serial(host, port, app, **kwargs):
    def locked(environ, start_response):
        # Only DynamoDB needs it, and an SQS long poll must not hold it.
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return app(environ, start_response)
        with _lock:
            return list(app(environ, start_response))

    _run_simple(host, port, locked, **kwargs)


def _patch_transactions():
    try:
        from moto.dynamodb import models
        from moto.dynamodb.models.table import Table
    except ImportError as e:  # another moto layout: keep its own behaviour
        print(f"serial.py: transactions not patched: {e}", file=sys.stderr)
        return
    backend = models.DynamoDBBackend
    original = backend.transact_write_items

    class _TablesAreNotCopied:
        """Stands in for the copy module inside moto's DynamoDB models: a
        Table 'copies' to itself, anything else is deep-copied as before."""

        def deepcopy(self, x, memo=None):
            return x if isinstance(x, Table) else copy.deepcopy(x, memo)

        def __getattr__(self, name):
            return getattr(copy, name)

    def touched(self, transact_items):
        snaps = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = self.get_table(op["TableName"])
            if op_type == "Put":
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            current = self.get_item(op["TableName"], key)
            before = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            snaps.append((op["TableName"], key, before))
        return snaps

    def restore(self, snaps):
        for table_name, key, before in reversed(snaps):
            if self.get_item(table_name, key) is not None:
                self.delete_item(table_name, key)
            if before is not None:
                self.put_item(table_name, before)

    def transact_write_items(self, transact_items):
        try:
            snaps = touched(self, transact_items)
        except Exception:
            return original(self, transact_items)  # let moto report the error
        try:
            return original(self, transact_items)
        except Exception:
            restore(self, snaps)
            raise

    models.copy = _TablesAreNotCopied()
    backend.transact_write_items = transact_write_items


def _patch_event_paths():
    try:
        import jsonpath_ng.ext as ext
        from jsonpath_ng.ext.parser import ExtendedJsonPathParser
    except ImportError as e:  # no EventBridge rules without it anyway
        print(f"serial.py: JSONPath parsing not cached: {e}", file=sys.stderr)
        return
    local = threading.local()

    def parse(path, debug=False):
        # A parser is reusable but keeps state while it parses: one per
        # thread. Parsed expressions are only read (find): shared.
        if getattr(local, "parser", None) is None:
            local.parser = ExtendedJsonPathParser(debug=debug)
        return local.parser.parse(path)

    ext.parse = functools.lru_cache(maxsize=1024)(parse)


def _patch_update_parsing():
    # moto parses each UpdateExpression twice per request and every
    # consumer only reads the tree (the validator works on a deep copy):
    # one parse per distinct expression.
    try:
        from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    except ImportError as e:
        print(f"serial.py: update expressions not cached: {e}", file=sys.stderr)
        return
    make = functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make.__func__)
    UpdateExpressionParser.make = classmethod(make)


def _patch_module_listing():
    try:
        from moto import backends
    except ImportError as e:
        print(f"serial.py: module listing not cached: {e}", file=sys.stderr)
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


_patch_transactions()
_patch_event_paths()
_patch_module_listing()
_patch_update_parsing()
server.run_simple = _serial
sys.exit(server.main(sys.argv[1:]))
