"""moto's server, answering one request at a time.

moto's backends take no locks, and its own launcher (`moto_server`) serves
requests on parallel threads, so two TransactWriteItems calls can interleave
between a condition check and a write. Real DynamoDB never does that: a
conditional transaction is atomic. eurochat's optimistic concurrency relies on
that guarantee (and its contract tests check it), so tests run moto serially.
Usage: python moto_serial.py HOST PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
run_simple(host, port, app, threaded=False)
