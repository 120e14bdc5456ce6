"""``python -m fwspool.cli``: the ``fwspool`` command without its console script, as the demo,
the tests and the chaos harness start it."""

from fwspool.cli import main

main()
