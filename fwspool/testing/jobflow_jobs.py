"""jobflow jobs for the jobflow twin tests and chaos scenario 16, importable by the ``rlaunch``
processes that run them wherever fwspool is installed (the compute node imports them by this name)."""

from jobflow import Flow, Response, job


@job
def make(x):
    """An output with nested fields, for references into them."""
    return {"value": x, "nested": {"pair": [x, x + 1], "deep": {"tenfold": x * 10}}}


@job
def add(a, b):
    return a + b


@job
def fail():
    raise RuntimeError("this job fails on purpose")


@job
def stop_here(x):
    return Response(output=x, stop_children=True)


@job
def grow(x):
    """A dynamic job: its output is replaced by a new flow, and it adds a job."""
    replacement = Flow([add(x, 100)], output=None)
    replacement.output = replacement.jobs[0].output
    return Response(replace=replacement, addition=add(x, 1000))


@job(data="blob")
def big(n):
    """An output whose ``blob`` goes to the ``data`` additional store (GridFS): ``n`` bytes."""
    return {"blob": "x" * n, "size": n}


@job
def add_when_told(a, b):
    """``a + b`` once a file ``go`` appears in the job's directory (the test decides when it ends)."""
    import os
    import time

    while not os.path.exists("go"):
        time.sleep(0.2)
    return a + b


def nested_chain(x=3):
    """The twins' chain with references into nested output fields: ``make(x)``, then
    ``tenfold + value`` (33 for 3), then that plus ``pair[1]`` (37 for 3)."""
    first = make(x)
    second = add(first.output["nested"]["deep"]["tenfold"], first.output["value"])
    third = add(second.output, first.output["nested"]["pair"][1])
    return Flow([first, second, third])


def failing_and_stopping():
    """A job that fails (its child never runs) beside one that stops its children (its child is
    never run): ``fail``, ``fail + 1``, ``stop_here(5)``, ``5 + 1``."""
    failing = fail()
    stopping = stop_here(5)
    return Flow([failing, add(failing.output, 1), stopping, add(stopping.output, 1)])


def dynamic(x=7):
    """A job replaced by a new flow that also adds a job, and a child of the replaced output:
    107, 1007, then 108 for 7."""
    grown = grow(x)
    return Flow([grown, add(grown.output, 1)])


def blob_and_reader(n=17 * 1024 * 1024):
    """A job whose output carries an ``n``-byte blob in the GridFS additional store (over
    MongoDB's 16 MB document limit by default), and a child that reads its size: ``n + 1``."""
    produced = big(n)
    return Flow([produced, add(produced.output["size"], 1)])
