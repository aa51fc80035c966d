"""Functional coverage of the cocotb regressions, on ``cocotb-coverage``'s database.

A testbench declares what it must reach (its run-time modes, error kinds and corner data) as
coverpoints with explicit bins, samples them as it drives the design, and registers its stream
endpoints (``verif.stream.StreamSource``/``StreamSink``) so that the stall patterns each port
saw are covered too. :meth:`Coverage.report` logs the holes and merges the report into the run's
record (``RunResult.record["coverage"]``), where the pytest side reads it back with
:func:`holes`::

    cov = Coverage("spu")
    nm = cov.point("nm", [(1, 1), (1, 2), (2, 4)])
    cov.ports(x=source, o=sink)
    ...
    nm((n, m))
    ...
    cov.report()

The database lives in the simulator's Python process, so the coverage of every cocotb test of
one simulation accumulates; each report covers all tests so far.

Stall bins per port (``<port>.handshake``): ``transfer`` (valid and ready in one cycle),
``held`` (valid waiting for ready: back-pressure on that port), ``empty`` (no valid),
``back_to_back`` (transfers on consecutive cycles) and ``long_hold`` (valid held for at least
:data:`LONG_HOLD` consecutive cycles, i.e. the payload had to stay stable through a long stall).
"""

from cocotb_coverage.coverage import CoverPoint, coverage_db

from . import common

__all__ = ["Coverage", "LONG_HOLD", "PORT_BINS", "holes", "per_process"]

LONG_HOLD = 3
PORT_BINS = ("transfer", "held", "empty", "back_to_back", "long_hold")

_PER_PROCESS = {}


def per_process(block, make):
    """The one coverage model of ``block`` in this simulator process, built by ``make()`` the
    first time and returned again after that.

    Every cocotb test of one simulation runs in the same Python process and ``cocotb-coverage``
    keys coverpoints by name, so a testbench's coverage class must be built once (declaring
    its points twice would fail) and every later test samples into the same points."""
    if block not in _PER_PROCESS:
        _PER_PROCESS[block] = make()
    return _PER_PROCESS[block]


class Coverage:
    """The coverpoints of one block's regression.

    Parameters
    ----------
    block : str
        Prefix of every coverpoint name (the registry name of the block).
    """

    def __init__(self, block):
        if not block or "." in block:
            raise ValueError(f"block must be a non-empty name without dots, not {block!r}")
        self.block = block
        self._points = {}
        self._ports = {}

    def point(self, name, bins, *, labels=None):
        """Declare coverpoint ``name`` with ``bins`` (hashable values compared with ``==``)
        and return its sampling function ``sample(value)``. ``labels`` (same length) names
        the bins in the report; by default a bin is reported as ``str(bin)``."""
        bins = list(bins)
        if not bins:
            raise ValueError(f"coverpoint {name!r} needs at least one bin")
        if len(set(bins)) != len(bins):
            raise ValueError(f"coverpoint {name!r} has duplicate bins")
        if labels is not None and len(labels) != len(bins):
            raise ValueError(f"coverpoint {name!r}: {len(labels)} labels for {len(bins)} bins")
        full = f"{self.block}.{name}"
        labels = [str(b) for b in bins] if labels is None else list(labels)

        @CoverPoint(full, xf=lambda value: value, bins=bins, bins_labels=labels)
        def sample(value):
            pass

        self._points[name] = full
        return sample

    def ports(self, **endpoints):
        """Cover the handshake patterns of stream endpoints, by port name (sampled in
        :meth:`report` from the endpoints' own statistics)."""
        for name, endpoint in endpoints.items():
            self._ports[name] = endpoint
            if f"{name}.handshake" not in self._points:
                self.point(f"{name}.handshake", PORT_BINS)

    def _sample_ports(self):
        for name, endpoint in self._ports.items():
            full = self._points[f"{name}.handshake"]
            seen = {"transfer": endpoint.states["transfer"], "held": endpoint.states["held"],
                    "empty": endpoint.states["empty"], "back_to_back": endpoint.back_to_back,
                    "long_hold": int(endpoint.longest_hold >= LONG_HOLD)}
            hits = coverage_db[full]._hits
            for key, count in seen.items():
                # Cumulative statistics: the database keeps the maximum seen so far.
                hits[key] = max(hits[key], count)

    def summary(self):
        """``{point: {"bins": {label: hits}, "holes": [labels with no hit]}}``."""
        self._sample_ports()
        out = {}
        for full in sorted(self._points.values()):
            detail = dict(coverage_db[full].detailed_coverage)
            out[full[len(self.block) + 1:]] = {
                "bins": {str(k): int(v) for k, v in detail.items()},
                "holes": [str(k) for k, v in detail.items() if v < 1]}
        return out

    def report(self, log=None):
        """Merge the coverage into the run's record and log one line per coverpoint (with its
        holes); returns :meth:`summary`."""
        summary = self.summary()
        if log is not None:
            for point, entry in summary.items():
                hit = len(entry["bins"]) - len(entry["holes"])
                line = f"coverage {self.block}.{point}: {hit}/{len(entry['bins'])}"
                if entry["holes"]:
                    line += f", holes: {', '.join(entry['holes'])}"
                log.info(line)
        common.record(coverage={self.block: summary})
        return summary


def holes(record, block):
    """``{point: [holes]}`` of ``block`` in a run record (only points with holes); raises
    ``KeyError`` when the run reported no coverage for ``block``."""
    summary = record["coverage"][block]
    return {point: entry["holes"] for point, entry in summary.items() if entry["holes"]}
