"""Compiler: a chain of N:M sparse GEMMs -> per-subsystem programs and memory images for the chip.

A chain is ``x_{l+1} = post_l(W_l x_l)`` for ``l = 0 .. L-1`` (:class:`GemmLayer`: dense int8
``W_l`` (O_l x K_l) pruned and compressed to its own N:M pattern by :func:`golden.nm.compress`,
its own bias / mult / shift and ReLU), ``x_0`` of shape ``(K_0, B)``, ``K_{l+1} = O_l``. The
numeric rules are those of :func:`golden.spu.spu_gemm` (and :mod:`golden.nm`);
:func:`reference_chain` is the plain numpy chain the chip must reproduce bit for bit.

Activation layout (both mappings)
    The batch is cut into column tiles of ``lanes`` (the last one padded with zero columns).
    Layer ``l`` reads bank ``l % 2`` and writes bank ``(l + 1) % 2``; in a bank, tile ``t`` of an
    activation with ``R`` rows occupies rows ``t*R .. t*R + R - 1``. The host loads ``x_0`` into
    bank 0; the output of the last layer ends in bank ``L % 2``.
Model-parallel (``mapping="model"``)
    Every subsystem holds every tile. Layer ``l``'s output rows are split into ``subsystems``
    contiguous slices (sizes differ by at most one, lower subsystems get the extra rows);
    subsystem ``s`` keeps only its slice of ``W_l`` and the post-ops. Per tile, one GEMM computes
    the slice and writes it with ``mask`` = all subsystems, i.e. locally and to every other
    subsystem over the ring (the all-gather is fused into the GEMM, so it overlaps compute);
    then ``WAIT(bank, tiles * O_l)`` (own rows included) before the next layer. The last layer
    writes its slice locally only (no gather); :meth:`Compiled.read_output` collects the slices.
    Every layer but the last needs ``O_l >= subsystems``: a subsystem without rows would not
    order the next-but-one layer's deliveries after its own WAIT (``ValueError`` otherwise).
Data-parallel (``mapping="data"``)
    Tiles are split over the subsystems (contiguous, sizes differ by at most one); each
    subsystem holds all weights and runs the whole chain on its tiles, writing with its own
    mask bit only (no ring traffic), with ``WAIT(bank, its tiles * O_l)`` between layers.

Weight image: for each layer, each output row takes ``bpr = ceil(nz / macs)`` words (``nz =
K/m*n``), rows in order, the tail of a row's last word zero; layers follow each other from word
0. Post-op image: one word per output row, layers in order.
"""

from dataclasses import dataclass, field

import numpy as np

from sparsehw.golden import nm, spu
from sparsehw.golden.chip import (MAX_ROWS, MEM_BANK0, MEM_IMEM, MEM_PMEM, MEM_WMEM, ChipModel,
                                  Gemm, Halt, Wait, beats_per_row, chip_params, encode, pack_post,
                                  pack_row, pack_w)


__all__ = ["GemmLayer", "Compiled", "compile_chain", "reference_chain", "run_chain",
           "MAPPINGS"]


MAPPINGS = ("model", "data")


@dataclass
class GemmLayer:
    """One GEMM of a chain: ``y = post(W x)``.

    Parameters
    ----------
    w : int array (O, K)
        Dense int8 weights; :func:`golden.nm.compress` keeps the ``n`` largest magnitudes of
        every group of ``m`` along K (ties to the lower index).
    n, m : int
        The layer's N:M pattern: powers of two, ``1 <= n <= m <= max_m``.
    bias : int array (O,)
        int32.
    mult : int array (O,)
        Unsigned 16-bit.
    shift : int array (O,)
        0..31.
    relu : bool
    """
    w: np.ndarray
    n: int
    m: int
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu: bool = False

    def __post_init__(self):
        self.w = np.asarray(self.w)
        if self.w.ndim != 2:
            raise ValueError(f"w must be a 2-D (O, K) array, not shape {self.w.shape}")
        o = self.w.shape[0]
        self.w = _int8("w", self.w)
        self.n, self.m = nm.check_nm(*(_integer(name, getattr(self, name))
                                       for name in ("n", "m")))
        if self.n & (self.n - 1):
            raise ValueError(f"n must be a power of two (the SPU codes n_log2), not {self.n}")
        for name, low, high in (("bias", -2**31, 2**31 - 1), ("mult", 0, 2**nm.MULT_BITS - 1),
                                ("shift", 0, nm.SHIFT_MAX)):
            value = np.asarray(getattr(self, name))
            if not np.issubdtype(value.dtype, np.integer):
                raise TypeError(f"{name} must be an integer array, not dtype {value.dtype}")
            try:
                value = np.broadcast_to(value, (o,)).astype(np.int64)
            except ValueError:
                raise ValueError(f"{name} must have shape ({o},) (one per output row), not "
                                 f"{value.shape}") from None
            if value.size and (value.min() < low or value.max() > high):
                raise ValueError(f"{name} must be in {low}..{high}, found "
                                 f"{value.min()}..{value.max()}")
            setattr(self, name, value)
        self.relu = bool(self.relu)

    @property
    def o(self):
        return self.w.shape[0]

    @property
    def k(self):
        return self.w.shape[1]


def _integer(name, value):
    """A Python int from an int or numpy integer (``TypeError`` otherwise, bool included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return int(value)


def _int8(name, array):
    """An integer array with every value in -128..127, as int64."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not dtype {array.dtype}")
    if array.size and (array.min() < -128 or array.max() > 127):
        raise ValueError(f"{name} values must be in -128..127, found "
                         f"{array.min()}..{array.max()}")
    return array.astype(np.int64)


def reference_chain(gemms, x):
    """The chain computed with :func:`golden.spu.spu_gemm` on the whole batch: ``(y, errors)``,
    ``y`` the last layer's output (O_last x B int8), ``errors`` a list of per-layer row flags."""
    x = np.asarray(x)
    errors = []
    for layer in gemms:
        values, indices = nm.compress(layer.w, layer.n, layer.m)
        x, error = spu.spu_gemm(values, indices, layer.n, layer.m, x, layer.bias, layer.mult,
                                layer.shift, layer.relu)
        errors.append(error)
    return x, errors


def _split(total, parts):
    """Contiguous ``(start, size)`` of ``parts`` slices of ``total`` (sizes differ by <= 1)."""
    out, start = [], 0
    for s in range(parts):
        size = total // parts + (s < total % parts)
        out.append((start, size))
        start += size
    return out


@dataclass
class Compiled:
    """Programs and memory images of a compiled chain.

    Attributes
    ----------
    params : dict
        Chip parameters (validated).
    mapping : str
        ``"model"`` or ``"data"``.
    subsystems : int
        Subsystems used (the others run a lone HALT).
    batch, tiles : int
        Columns of ``x`` and column tiles of ``lanes``.
    programs : list of list
        Instructions per subsystem (all of the chip's subsystems).
    weights : list of (numpy.ndarray int8, numpy.ndarray uint8)
        Per subsystem, the weight image ``(values, indices)``, shape ``(words, macs)``.
    posts : list of (bias, mult, shift) arrays
        Per subsystem, the post-op image.
    tiles_of : list of list of int
        Per subsystem, the global tile numbers it holds in its banks, in bank order.
    row_slices : list of list of (start, size)
        Per layer, per subsystem, its output rows (model mapping; data mapping: all rows).
    shapes : list of (k, o)
    patterns : list of (n, m)
    """
    params: dict
    mapping: str
    subsystems: int
    batch: int
    tiles: int
    programs: list
    weights: list
    posts: list
    tiles_of: list
    row_slices: list
    shapes: list = field(default_factory=list)
    patterns: list = field(default_factory=list)

    @property
    def output_bank(self):
        return len(self.shapes) % 2

    def work(self):
        """What the compiled chain asks of the chip, computed from the shapes alone.

        Returns
        -------
        dict
            ``nonzero_macs``: int8 products the chain needs (``sum_l O_l * K_l * n_l / m_l *
            batch``; padded tile columns not counted); ``dense_macs``: the same without
            sparsity; ``ring_rows``: rows sent over the ring (model mapping: ``tiles * O_l *
            (S - 1)`` for every layer but the last; data mapping: 0); ``ring_bytes``:
            ``ring_rows * lanes``; ``gemms``: GEMM instructions per subsystem.
        """
        nonzero = sum(o * k // layer_m * layer_n * self.batch
                      for (k, o), (layer_n, layer_m) in zip(self.shapes, self.patterns))
        dense = sum(o * k * self.batch for k, o in self.shapes)
        if self.mapping == "model":
            ring = sum(self.tiles * o * (self.subsystems - 1) for _, o in self.shapes[:-1])
        else:
            ring = 0
        gemms = [sum(isinstance(i, Gemm) for i in program) for program in self.programs]
        return {"nonzero_macs": nonzero, "dense_macs": dense, "ring_rows": ring,
                "ring_bytes": ring * self.params["lanes"], "gemms": gemms}

    def load(self, model):
        """Write the programs, weights and post-ops into ``model`` (a :class:`ChipModel`)."""
        for s, program in enumerate(self.programs):
            model.load_program(s, program)
        for s in range(self.subsystems):
            values, indices = self.weights[s]
            sub = model.subs[s]
            sub.w_value[:len(values)] = values
            sub.w_index[:len(values)] = indices
            bias, mult, shift = self.posts[s]
            sub.p_bias[:len(bias)] = bias
            sub.p_mult[:len(bias)] = mult
            sub.p_shift[:len(bias)] = shift

    def input_images(self, x):
        """Per subsystem, the rows of bank 0 (``numpy.ndarray`` int8, ``(tiles * K_0, lanes)``)
        holding ``x`` (K_0 x batch) in this mapping's layout."""
        x = np.asarray(x)
        k0 = self.shapes[0][0]
        lanes = self.params["lanes"]
        if x.shape != (k0, self.batch):
            raise ValueError(f"x must have shape {(k0, self.batch)}, not {x.shape}")
        padded = np.zeros((k0, self.tiles * lanes), dtype=np.int8)
        padded[:, :self.batch] = _int8("x", x)
        images = []
        for s in range(self.subsystems):
            rows = [padded[:, t * lanes:(t + 1) * lanes] for t in self.tiles_of[s]]
            images.append(np.concatenate(rows, axis=0) if rows
                          else np.zeros((0, lanes), np.int8))
        return images

    def load_input(self, model, x):
        """Write ``x`` into bank 0 of every subsystem used."""
        for s, rows in enumerate(self.input_images(x)):
            model.subs[s].banks[0, :len(rows)] = rows

    def host_images(self, x):
        """Per subsystem (all of the chip's), ``{mem: words}``: the packed host words
        (:mod:`golden.chip` formats) of the program, weights, post-ops and bank 0 (with ``x``),
        each to be written from address 0."""
        p = self.params
        inputs = self.input_images(x)
        out = []
        for s, program in enumerate(self.programs):
            mems = {MEM_IMEM: [i if isinstance(i, int) else encode(i) for i in program]}
            if s < self.subsystems:
                values, indices = self.weights[s]
                mems[MEM_WMEM] = [pack_w(v, i, p) for v, i in zip(values, indices)]
                mems[MEM_PMEM] = [pack_post(*t) for t in zip(*self.posts[s])]
                mems[MEM_BANK0] = [pack_row(r) for r in inputs[s]]
            out.append(mems)
        return out

    def read_output(self, model):
        """The chain's output (O_last x batch int8) from the final memories.

        Parameters
        ----------
        model : ChipModel or sequence of arrays
            A model after its run, or per subsystem its two banks as an int8 array of shape
            ``(2, bank_rows, lanes)`` (for instance read back from the RTL).
        """
        banks = [sub.banks for sub in model.subs] if hasattr(model, "subs") else model
        k_last, o_last = self.shapes[-1]
        lanes = self.params["lanes"]
        bank = self.output_bank
        out = np.zeros((o_last, self.tiles * lanes), dtype=np.int8)
        for s in range(self.subsystems):
            start, size = self.row_slices[-1][s]
            for i, t in enumerate(self.tiles_of[s]):
                rows = np.asarray(banks[s])[bank, i * o_last + start:i * o_last + start + size]
                out[start:start + size, t * lanes:(t + 1) * lanes] = rows
        return out[:, :self.batch]


def compile_chain(gemms, subsystems=None, mapping="model", params=None, *, batch=None, x=None):
    """Compile a chain of GEMMs for the chip.

    Parameters
    ----------
    gemms : list of GemmLayer
        ``gemms[l+1].k == gemms[l].o``.
    subsystems : int, optional
        Subsystems to use (default: all of ``params["subsystems"]``).
    mapping : {"model", "data"}
        Model-parallel (output rows split, all-gather over the ring) or data-parallel (batch
        tiles split, weights replicated, no ring traffic); see the module docstring.
    params : dict, optional
        Chip parameters (:func:`golden.chip.chip_params`: other keys are ignored).
    batch : int, optional
        Columns of ``x`` (or give ``x``).
    x : int array (K_0, batch), optional
        Only its shape is used here (:meth:`Compiled.load_input` places it).

    Returns
    -------
    Compiled

    Raises
    ------
    TypeError
        ``gemms`` holds something else than :class:`GemmLayer`.
    ValueError
        Shapes do not chain, a layer does not fit the SPU (``m > max_m``, ``K > max_k``, ``K``
        not a multiple of ``m`` or ``act_rows``), the images or programs do not fit the
        memories, ``O_l < subsystems`` for a layer but the last (model mapping), or a bad
        ``mapping``/``subsystems``/``batch``.
    """
    p = chip_params(params)
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping must be one of {MAPPINGS}, not {mapping!r}")
    used = p["subsystems"] if subsystems is None else subsystems
    if isinstance(used, bool) or not isinstance(used, int) or not 1 <= used <= p["subsystems"]:
        raise ValueError(f"subsystems must be an integer in 1..{p['subsystems']}, not {used!r}")
    gemms = list(gemms)
    if not gemms:
        raise ValueError("gemms must hold at least one GemmLayer")
    for layer in gemms:
        if not isinstance(layer, GemmLayer):
            raise TypeError(f"gemms must hold GemmLayer objects, not {layer!r}")
    if x is not None:
        batch = np.asarray(x).shape[1]
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive integer (or give x), not {batch!r}")
    batch = int(batch)
    lanes, macs, rows = p["lanes"], p["macs"], p["bank_rows"]
    tiles = -(-batch // lanes)

    shapes = []
    for l, layer in enumerate(gemms):
        k, o = layer.k, layer.o
        if l and k != gemms[l - 1].o:
            raise ValueError(f"layer {l} has K={k} but layer {l - 1} has O={gemms[l - 1].o}")
        if layer.m > p["max_m"]:
            raise ValueError(f"layer {l}: m={layer.m} exceeds max_m={p['max_m']}")
        if k > p["max_k"] or k % layer.m or k % p["act_rows"]:
            raise ValueError(f"layer {l}: K={k} must be <= max_k={p['max_k']} and a multiple "
                             f"of m={layer.m} and act_rows={p['act_rows']}")
        if o >= 1 << 16:
            raise ValueError(f"layer {l}: O={o} exceeds 65535")
        shapes.append((k, o))

    if mapping == "model":
        tiles_of = [list(range(tiles))] * used
        row_slices = [_split(o, used) for _, o in shapes]
        for l, (_, o) in enumerate(shapes[:-1]):
            if o < used:
                raise ValueError(f"layer {l}: O={o} < subsystems={used}; the model mapping "
                                 f"needs every layer but the last to give each subsystem a row")
    else:
        tiles_of = [list(range(start, start + size)) for start, size in _split(tiles, used)]
        row_slices = [[(0, o)] * used for _, o in shapes]

    programs, weights, posts = [], [], []
    all_mask = (1 << used) - 1
    for s in range(used):
        program, w_values, w_indices, post_rows = [], [], [], []
        w_addr = p_addr = 0
        my_tiles = len(tiles_of[s])
        for l, layer in enumerate(gemms):
            k, o = shapes[l]
            start, size = row_slices[l][s]
            last = l == len(gemms) - 1
            n_log2, m_log2 = layer.n.bit_length() - 1, layer.m.bit_length() - 1
            bpr = beats_per_row(k, n_log2, m_log2, macs)
            if max(my_tiles * k, my_tiles * o) > rows:
                raise ValueError(f"layer {l}: {my_tiles} tiles of {max(k, o)} rows exceed "
                                 f"bank_rows={rows}")
            if size:
                values, indices = nm.compress(layer.w[start:start + size], layer.n, layer.m)
                pad = bpr * macs - values.shape[1]
                values = np.pad(values, ((0, 0), (0, pad))).astype(np.int8)
                indices = np.pad(indices, ((0, 0), (0, pad))).astype(np.uint8)
                w_values.append(values.reshape(size * bpr, macs))
                w_indices.append(indices.reshape(size * bpr, macs))
                post_rows.append((layer.bias[start:start + size], layer.mult[start:start + size],
                                  layer.shift[start:start + size]))
                mask = 1 << s if (last or mapping == "data") else all_mask
                for i in range(my_tiles):
                    program.append(Gemm(x_bank=l % 2, x_addr=i * k, w_addr=w_addr,
                                        p_addr=p_addr, n_log2=n_log2, m_log2=m_log2, k=k,
                                        o=size, relu=int(layer.relu), d_bank=(l + 1) % 2,
                                        d_addr=i * o + start, mask=mask))
                w_addr += size * bpr
                p_addr += size
            if not last and my_tiles:
                program.append(Wait(bank=(l + 1) % 2, count=my_tiles * o))
        program.append(Halt())
        if w_addr > p["wmem_depth"]:
            raise ValueError(f"subsystem {s}: {w_addr} weight words exceed "
                             f"wmem_depth={p['wmem_depth']}")
        if p_addr > p["pmem_depth"]:
            raise ValueError(f"subsystem {s}: {p_addr} post-op words exceed "
                             f"pmem_depth={p['pmem_depth']}")
        if len(program) > p["imem_depth"]:
            raise ValueError(f"subsystem {s}: {len(program)} instructions exceed "
                             f"imem_depth={p['imem_depth']}")
        programs.append(program)
        weights.append((np.concatenate(w_values) if w_values
                        else np.zeros((0, macs), np.int8),
                        np.concatenate(w_indices) if w_indices
                        else np.zeros((0, macs), np.uint8)))
        posts.append(tuple(np.concatenate([r[i] for r in post_rows]) if post_rows
                           else np.zeros(0, np.int64) for i in range(3)))
    for s in range(used, p["subsystems"]):
        programs.append([Halt()])
    assert all(max(k, o) <= MAX_ROWS for k, o in shapes)
    return Compiled(params=p, mapping=mapping, subsystems=used, batch=batch, tiles=tiles,
                    programs=programs, weights=weights, posts=posts, tiles_of=tiles_of[:used],
                    row_slices=row_slices, shapes=shapes,
                    patterns=[(layer.n, layer.m) for layer in gemms])


def run_chain(gemms, x, subsystems=None, mapping="model", params=None):
    """Compile, load and run a chain on a fresh :class:`golden.chip.ChipModel`.

    Returns
    -------
    y : numpy.ndarray of int8 (O_last, batch)
    model : ChipModel
        With its final memories, statuses and ``stats``.
    compiled : Compiled
    """
    compiled = compile_chain(gemms, subsystems, mapping, params, x=x)
    model = ChipModel(compiled.params)
    compiled.load(model)
    compiled.load_input(model, x)
    model.run()
    return compiled.read_output(model), model, compiled
