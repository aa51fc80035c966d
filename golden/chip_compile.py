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
           "MAPPINGS", "EncoderLayer", "CompiledLayer", "compile_encoder_layer",
           "reference_encoder_layer", "run_encoder_layer", "StreamedLayer",
           "compile_encoder_layer_streamed", "run_encoder_layer_streamed"]


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
        self.w = nm.as_int8("w", self.w)
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


def _pack_slice(g, start, size, k, macs, w_vals, w_idx, post_rows):
    """Append output rows ``start .. start + size`` of weight GEMM ``g`` (reduction ``k``) to a
    subsystem's images: the N:M-compressed weights as ``macs``-entry words (each row padded to
    whole words), their indices, and the post-op rows. Returns ``(n_log2, m_log2, bpr)``."""
    n_log2, m_log2 = g.n.bit_length() - 1, g.m.bit_length() - 1
    bpr = beats_per_row(k, n_log2, m_log2, macs)
    values, indices = nm.compress(g.w[start:start + size], g.n, g.m)
    pad = bpr * macs - values.shape[1]
    w_vals.append(np.pad(values, ((0, 0), (0, pad))).astype(np.int8).reshape(size * bpr, macs))
    w_idx.append(np.pad(indices, ((0, 0), (0, pad))).astype(np.uint8).reshape(size * bpr, macs))
    post_rows.append((g.bias[start:start + size], g.mult[start:start + size],
                      g.shift[start:start + size]))
    return n_log2, m_log2, bpr


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
        padded[:, :self.batch] = nm.as_int8("x", x)
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


# -- a whole transformer encoder layer ----------------------------------------------------------
@dataclass
class EncoderLayer:
    """One BERT encoder layer in the chip's integer formats (int8 activations between steps).

    ``x`` is ``(H, T)`` int8 (hidden x tokens). Steps, each exactly one chip operation:

    1. ``q, k, v = post(Wq x), post(Wk x), post(Wv x)`` (``qkv``: three :class:`GemmLayer`,
       ``H x H``, their own N:M).
    2. Per head ``h`` (rows ``h*d .. h*d + d - 1``, ``d = H / heads``): ``s = post(k_h^T q_h)``
       (a dense GEMM, ``T`` key rows x ``T`` query columns, post-op ``score_post = (mult,
       shift)`` for every row, bias 0); ``p = softmax`` down each column (over the keys) with
       ``softmax = (fin, fout, oshift)``; ``c_h = post(v_h p)`` (``ctx_post``).
    3. ``a = post(Wo c)``; ``r1 = add(a, x)`` (``add1 = (fin, fout, oshift)``: ACT add);
       ``h1 = layernorm(r1)`` per token (``ln1 = (gamma, beta, fout, oshift)``).
    4. ``f = post(W1 h1)``; ``g = gelu(f)`` (``gelu = (fin, fout, oshift)``); ``f2 =
       post(W2 g)``; ``r2 = add(f2, h1)`` (``add2``); ``y = layernorm(r2)`` (``ln2``).

    Numeric rules: :func:`golden.spu.spu_gemm` and :func:`golden.chip.act_slice`.
    """
    qkv: list
    wo: GemmLayer
    w1: GemmLayer
    w2: GemmLayer
    heads: int
    score_post: tuple
    ctx_post: tuple
    softmax: tuple
    add1: tuple
    ln1: tuple
    gelu: tuple
    add2: tuple
    ln2: tuple

    @property
    def hidden(self):
        return self.wo.o


def _sat8(v):
    return np.clip(v, -128, 127).astype(np.int8)


def _round_shift(v, s):
    v = np.asarray(v, np.int64)
    return (v + (1 << (s - 1))) >> s if s > 0 else v


def _columns(op, x, fin, fout, oshift, gamma=None, beta=None):
    from sparsehw.golden import act
    out = np.zeros(x.shape, np.int64)
    for j in range(x.shape[1]):
        ys, _ = act.run(op, [int(v) for v in x[:, j]], fin=fin, fout=fout, gamma=gamma,
                        beta=beta)
        out[:, j] = ys
    return _sat8(_round_shift(out, oshift))


def reference_encoder_layer(layer, x):
    """The layer in plain numpy on the whole ``(H, T)`` input (golden.spu / golden.act), the
    result the chip must give bit for bit: ``(H, T)`` int8."""
    from sparsehw.golden import act
    x = np.asarray(x, np.int64)
    h_dim, tokens = x.shape
    d = h_dim // layer.heads

    def gemm(g, inp):
        values, indices = nm.compress(g.w, g.n, g.m)
        return spu.spu_gemm(values, indices, g.n, g.m, inp, g.bias, g.mult, g.shift,
                            g.relu)[0].astype(np.int64)

    def dense(w, inp, post):
        o = w.shape[0]
        return spu.spu_gemm(w, np.zeros(w.shape, np.int64), 1, 1, inp, np.zeros(o, np.int64),
                            np.full(o, post[0]), np.full(o, post[1]), False)[0].astype(np.int64)

    def add(a, b, rule):
        fin, fout, oshift = rule
        return _sat8(_round_shift((a << fin) + (b << fout), oshift)).astype(np.int64)

    q, k, v = (gemm(g, x) for g in layer.qkv)
    c = np.zeros_like(q)
    for h in range(layer.heads):
        rows = slice(h * d, (h + 1) * d)
        s = dense(k[rows].T, q[rows], layer.score_post)
        p = _columns("softmax", s, *layer.softmax).astype(np.int64)
        c[rows] = dense(v[rows], p, layer.ctx_post)
    r1 = add(gemm(layer.wo, c), x, layer.add1)
    g1, b1, fo1, os1 = layer.ln1
    h1 = _columns("layernorm", r1, 0, fo1, os1, list(g1), list(b1)).astype(np.int64)
    f = gemm(layer.w1, h1)
    g = np.array([[_sat8(_round_shift(act.gelu(int(e), layer.gelu[0], layer.gelu[1])[0],
                                      layer.gelu[2])) for e in row] for row in f], np.int64)
    r2 = add(gemm(layer.w2, g), h1, layer.add2)
    g2, b2, fo2, os2 = layer.ln2
    return _columns("layernorm", r2, 0, fo2, os2, list(g2), list(b2))


def random_encoder_layer(rng, hidden, heads, ffn, nm=(1, 1)):
    """A random :class:`EncoderLayer` (``hidden`` x ``hidden`` attention weights, ``ffn``
    hidden FFN, one N:M ``nm`` for every weight GEMM) whose post-op shifts keep int8
    activations of random int8 inputs in range (a GEMM's output spread grows as
    ``sqrt(nonzero K)``): the stimulus of the chip's layer tests. ``rng`` is a
    ``numpy.random.Generator``."""
    import math

    def gemm(o, k):
        shift = max(1, round(math.log2(74 * 74 * math.sqrt(k * nm[0] / nm[1]) / 40)))
        return GemmLayer(rng.integers(-128, 128, (o, k)).astype(np.int8), nm[0], nm[1],
                         rng.integers(-2000, 2000, o), np.ones(o, int), np.full(o, shift), False)

    def layernorm():
        return rng.integers(2048, 6144, hidden), rng.integers(-200, 200, hidden), 8, 3
    d = hidden // heads
    return EncoderLayer(qkv=[gemm(hidden, hidden) for _ in range(3)], wo=gemm(hidden, hidden),
                        w1=gemm(ffn, hidden), w2=gemm(hidden, ffn), heads=heads,
                        score_post=(1, max(1, round(math.log2(74 * 74 * math.sqrt(d) / 40)))),
                        ctx_post=(1, 7), softmax=(3, 15, 8), add1=(0, 0, 1), ln1=layernorm(),
                        gelu=(5, 8, 3), add2=(0, 0, 1), ln2=layernorm())


@dataclass
class CompiledLayer:
    """Two programs per subsystem (phase 1: q, k, v; phase 2: the rest) with the host step
    between them (:meth:`host_step`), and the images. See :func:`compile_encoder_layer`."""
    params: dict
    subsystems: int
    tiles: int
    tokens: int
    phase1: list
    phase2: list
    weights: list
    posts: list
    addr: dict
    att_w: dict
    heads_of: list
    #: :meth:`breakdown` of subsystem 0 after each phase of :func:`run_encoder_layer`.
    breakdowns: list = field(default_factory=list)
    #: :meth:`cycle_categories` (critical path) after each phase of :func:`run_encoder_layer`.
    categories: list = field(default_factory=list)

    def breakdown(self, model, s=0, phase=2):
        """Cycles of subsystem ``s`` in the last run (``phase`` 1 or 2) by kind: ``weight_gemm``,
        ``attention_gemm`` (the scores and context GEMMs: issue cycles by
        :func:`golden.chip.gemm_cycles`), ``act`` (activation engine), ``wait`` (stalls on
        arrivals: the ring), ``halt`` (draining the last rows), ``send``, ``issue`` (the
        sequencer's per-instruction cycles)."""
        from sparsehw.golden.chip import gemm_cycles
        parts = dict(model.stats["cycle_parts"][s])
        program = self.phase1[s] if phase == 1 else self.phase2[s]
        att = {a for (t, _, _), a in self.att_w.items() if t == s}
        attention = sum(gemm_cycles(i, self.params)[0] for i in program
                        if isinstance(i, Gemm) and i.w_addr in att)
        return {"weight_gemm": parts["gemm"] - attention, "attention_gemm": attention,
                "act": parts["act"], "wait": parts["wait"], "halt": parts["halt"],
                "send": parts["send"], "issue": parts["issue"]}

    def cycle_categories(self, model, phase, s=None):
        """Cycles of one subsystem in the last run (``phase`` 1 or 2) by category, summing to
        exactly its cycle count (``model.stats["cycles"][s]``; ``s`` None: the **critical
        path**, the subsystem that finished last, whose count is ``total_cycles``).

        Returns ``(s, parts)``; ``parts`` (cycles of the chip cycle model, docs/chip.md):

        - ``weight_beats``: the weight GEMMs' weight beats (``o * bpr`` per tile: what N:M
          shrinks); ``weight_xload``: their SPU X-load stalls (``max(0, k / act_rows - bpr)``
          per tile: X arrives slower than row 0 computes; 0 when dense);
        - ``attention_gemm``: the scores and context GEMMs (dense; beats and stalls);
        - ``act_softmax``, ``act_layernorm``, ``act_gelu``, ``act_add``: the activation
          engine, by op (:func:`golden.chip.act_cycles`);
        - ``ring_wait``: WAIT stalls (rows still on the ring or in the SPU pipeline);
          ``drain``: HALT waiting for the last rows; ``send``: SEND port cycles;
          ``issue``: the sequencer's cycles per instruction.
        """
        from sparsehw.golden.chip import ACT_ADD, Act, act_cycles, gemm_cycles
        from sparsehw.golden import act as act_rules
        cyc = model.stats["cycles"]
        s = max(range(self.subsystems), key=lambda i: cyc[i]) if s is None else s
        raw = model.stats["cycle_parts"][s]
        program = self.program(phase, s)
        att = {a for (t, _, _), a in self.att_w.items() if t == s}
        out = {"weight_beats": 0, "weight_xload": 0, "attention_gemm": 0, "act_softmax": 0,
               "act_layernorm": 0, "act_gelu": 0, "act_add": 0, "act_other": 0,
               "ring_wait": raw["wait"], "drain": raw["halt"], "send": raw["send"],
               "issue": raw["issue"]}
        for i in program:
            if isinstance(i, Gemm):
                issue = gemm_cycles(i, self.params)[0]
                if i.w_addr in att:
                    out["attention_gemm"] += issue
                else:
                    beats = i.o * beats_per_row(i.k, i.n_log2, i.m_log2, self.params["macs"])
                    out["weight_beats"] += beats
                    out["weight_xload"] += issue - beats
            elif isinstance(i, Act):
                name = "add" if i.op == ACT_ADD else act_rules.OPS[i.op]
                key = f"act_{name}" if f"act_{name}" in out else "act_other"
                out[key] += act_cycles(i, self.params)
        gemms = out["weight_beats"] + out["weight_xload"] + out["attention_gemm"]
        acts = sum(v for k, v in out.items() if k.startswith("act_"))
        if gemms != raw["gemm"] or acts != raw["act"] or sum(out.values()) != cyc[s]:
            raise AssertionError(f"subsystem {s}: categories {out} do not add up to the cycle "
                                 f"model's parts {raw} / {cyc[s]} cycles")
        return s, out

    def program(self, phase, s):
        """Subsystem ``s``'s program of ``phase`` (1 or 2)."""
        return self.phase1[s] if phase == 1 else self.phase2[s]

    def load(self, model, phase):
        for s, program in enumerate(self.phase1 if phase == 1 else self.phase2):
            model.load_program(s, program)
        if phase == 1:
            for s in range(self.subsystems):
                values, indices = self.weights[s]
                sub = model.subs[s]
                sub.w_value[:len(values)], sub.w_index[:len(values)] = values, indices
                bias, mult, shift = self.posts[s]
                sub.p_bias[:len(bias)], sub.p_mult[:len(bias)] = bias, mult
                sub.p_shift[:len(bias)] = shift

    def load_input(self, model, x):
        """``x`` (H, T) into bank 0 of every subsystem used, tile-major."""
        lanes = self.params["lanes"]
        h_dim = x.shape[0]
        padded = np.zeros((h_dim, self.tiles * lanes), np.int8)
        padded[:, :x.shape[1]] = x
        for s in range(self.subsystems):
            for t in range(self.tiles):
                base = self.addr["x"][1] + t * h_dim
                model.subs[s].banks[0, base:base + h_dim] = padded[:, t * lanes:(t + 1) * lanes]

    def _tensor(self, banks, name, rows):
        bank, base = self.addr[name]
        lanes = self.params["lanes"]
        out = np.zeros((rows, self.tiles * lanes), np.int8)
        for t in range(self.tiles):
            out[:, t * lanes:(t + 1) * lanes] = banks[bank, base + t * rows:base + (t + 1) * rows]
        return out[:, :self.tokens]

    def host_step(self, model):
        """Between the phases, the host (or a future sequencer step) reads ``k`` and ``v`` of
        every head from the banks of the head's subsystem and writes them into its weight
        memory as dense 1:1 rows: ``k_h^T`` (``T`` rows of ``d``) and ``v_h`` (``d`` rows of
        ``T``), each row ``ceil(len / macs)`` words, index 0 (the chip reads activations as
        weights only through its weight memory)."""
        h_dim = self.addr["h"]
        macs = self.params["macs"]
        for s, heads in enumerate(self.heads_of):
            sub = model.subs[s]
            k = self._tensor(sub.banks, "k", h_dim)
            v = self._tensor(sub.banks, "v", h_dim)
            for h in heads:
                d = self.addr["d"]
                for mat, key in ((k[h * d:(h + 1) * d].T, "score"), (v[h * d:(h + 1) * d], "ctx")):
                    rows, cols = mat.shape
                    bpr = -(-cols // macs)
                    words = np.zeros((rows, bpr * macs), np.int8)
                    words[:, :cols] = mat
                    base = self.att_w[(s, h, key)]
                    sub.w_value[base:base + rows * bpr] = words.reshape(rows * bpr, macs)
                    sub.w_index[base:base + rows * bpr] = 0

    def read_output(self, model, s=0):
        return self._tensor(model.subs[s].banks, "y", self.addr["h"])

    def phase_images(self, phase, x=None):
        """Host images of one phase, per subsystem (all of the chip's) a list of ``(mem, addr,
        packed words)``: phase 1 the programs, weights, post-ops and ``x`` (H, T) in bank 0
        (as :meth:`load` and :meth:`load_input`); phase 2 the programs only (its weight words
        come from :meth:`host_images`)."""
        lanes = self.params["lanes"]
        out = []
        for s, program in enumerate(self.phase1 if phase == 1 else self.phase2):
            entries = [(MEM_IMEM, 0, [i if isinstance(i, int) else encode(i) for i in program])]
            if phase == 1 and s < self.subsystems:
                values, indices = self.weights[s]
                entries.append((MEM_WMEM, 0, [pack_w(v, i, self.params)
                                              for v, i in zip(values, indices)]))
                entries.append((MEM_PMEM, 0, [pack_post(*t) for t in zip(*self.posts[s])]))
                h_dim = x.shape[0]
                padded = np.zeros((h_dim, self.tiles * lanes), np.int8)
                padded[:, :x.shape[1]] = x
                rows = [padded[:, t * lanes:(t + 1) * lanes] for t in range(self.tiles)]
                entries.append((MEM_BANK0, self.addr["x"][1],
                                [pack_row(r) for r in np.concatenate(rows, axis=0)]))
            out.append(entries)
        return out

    def host_images(self, banks):
        """The host step (:meth:`host_step`) as host images: from per subsystem its two banks
        (an int8 array ``(2, rows, lanes)``, e.g. read back from the RTL after phase 1), per
        subsystem a list of ``(MEM_WMEM, addr, packed words)``."""
        class _Sub:
            pass

        class _Model:
            pass
        wmem, macs = self.params["wmem_depth"], self.params["macs"]
        model = _Model()
        model.subs = []
        for b in banks:
            sub = _Sub()
            sub.banks = np.asarray(b)
            sub.w_value = np.zeros((wmem, macs), np.int8)
            sub.w_index = np.full((wmem, macs), -1, np.int64)
            model.subs.append(sub)
        self.host_step(model)
        out = []
        for sub in model.subs:
            entries = []
            written = np.flatnonzero((sub.w_index >= 0).all(axis=1))
            for run in np.split(written, np.flatnonzero(np.diff(written) > 1) + 1):
                if len(run):
                    entries.append((MEM_WMEM, int(run[0]),
                                    [pack_w(sub.w_value[i], sub.w_index[i], self.params)
                                     for i in run]))
            out.append(entries)
        return out


def compile_encoder_layer(layer, tokens, subsystems=None, params=None):
    """Compile an :class:`EncoderLayer` for ``tokens`` tokens onto ``subsystems`` subsystems.

    Mapping: every subsystem holds every token tile. The weight GEMMs are split by output rows
    over the subsystems and all-gathered as they are produced (:func:`compile_chain`'s model
    mapping); the heads are dealt round-robin (head ``h`` on subsystem ``h % S``), whose
    context rows are gathered the same way; the activation-engine steps (softmax of its own
    heads aside) run on every subsystem on its full copy (no ring traffic; they do not scale
    with ``S``). Counted arrivals alternate between the banks (c: bank 0; scores, a: bank 1;
    f: bank 0; f2: bank 1) so that no WAIT can count a later tensor's rows. Phase 1 computes
    ``q, k, v``; :meth:`CompiledLayer.host_step` writes ``k_h^T`` and ``v_h`` into the weight
    memory of the head's subsystem; phase 2 runs the rest.

    Raises
    ------
    ValueError
        A GEMM does not fit (``K > max_k`` or not a multiple of ``m``/``act_rows``), the
        tensors do not fit the banks or memories, ``T > act_max_row`` or ``H > act_max_row``,
        or the chip has no ``act_engine``.
    """
    from sparsehw.golden.chip import Act, ACT_OPS
    p = chip_params(params)
    if not p["act_engine"]:
        raise ValueError("compile_encoder_layer needs a chip with act_engine=True")
    used = p["subsystems"] if subsystems is None else subsystems
    lanes, macs, ar = p["lanes"], p["macs"], p["act_rows"]
    h_dim, f_dim = layer.hidden, layer.w1.o
    d = h_dim // layer.heads
    tiles = -(-tokens // lanes)
    tp = tiles * lanes                       # keys incl. padded columns: the padded tokens are
    if tp != tokens:                         # keys too, which would change the softmax
        raise ValueError(f"tokens={tokens} must be a multiple of lanes={lanes}")
    for g, k in ((layer.qkv[0], h_dim), (layer.qkv[1], h_dim), (layer.qkv[2], h_dim),
                 (layer.wo, h_dim), (layer.w1, h_dim), (layer.w2, f_dim)):
        if g.k != k or k > p["max_k"] or k % g.m or k % ar:
            raise ValueError(f"GEMM K={g.k} does not fit (max_k={p['max_k']}, m={g.m})")
    if max(tokens, h_dim) > p["act_max_row"] or tokens % ar or d % ar or tokens > p["max_k"]:
        raise ValueError("tokens and hidden must be <= act_max_row, tokens <= max_k, and "
                         "tokens and the head size multiples of act_rows")
    # bank allocation: (bank, base) per tensor, tile-major
    top = [0, 0]
    addr = {"h": h_dim, "d": d}

    def alloc(name, bank, rows):
        addr[name] = (bank, top[bank])
        top[bank] += tiles * rows
    for name, bank, rows in (("x", 0, h_dim), ("q", 1, h_dim), ("k", 1, h_dim), ("v", 1, h_dim),
                             ("c", 0, h_dim), ("a", 1, h_dim), ("r1", 0, h_dim),
                             ("h1", 0, h_dim), ("f", 0, f_dim), ("f2", 1, h_dim),
                             ("r2", 1, h_dim), ("y", 1, h_dim)):
        alloc(name, bank, rows)
    heads_of = [[h for h in range(layer.heads) if h % used == s] for s in range(used)]
    addr["s"] = (1, top[1])
    top[1] += max(len(hs) for hs in heads_of) * tiles * tokens
    if max(top) > p["bank_rows"]:
        raise ValueError(f"the layer needs {max(top)} bank rows, bank_rows={p['bank_rows']}")
    all_mask = (1 << used) - 1
    phase1, phase2, weights, posts, att_w = [], [], [], [], {}
    for s in range(used):
        w_vals, w_idx, post_rows = [], [], []
        w_addr = p_addr = 0
        prog1, prog2 = [], []

        def weight_gemm(g, src, dst, k, o, prog):
            nonlocal w_addr, p_addr
            start, size = _split(o, used)[s]
            n_log2, m_log2, bpr = _pack_slice(g, start, size, k, macs, w_vals, w_idx, post_rows)
            for t in range(tiles):
                prog.append(Gemm(x_bank=addr[src][0], x_addr=addr[src][1] + t * k,
                                 w_addr=w_addr, p_addr=p_addr, n_log2=n_log2, m_log2=m_log2,
                                 k=k, o=size, relu=int(g.relu), d_bank=addr[dst][0],
                                 d_addr=addr[dst][1] + t * o + start, mask=all_mask))
            w_addr += size * bpr
            p_addr += size

        def post_words(rows, mult, shift):
            nonlocal p_addr
            post_rows.append((np.zeros(rows, np.int64), np.full(rows, mult),
                              np.full(rows, shift)))
            p_addr += rows
            return p_addr - rows

        for g, name in zip(layer.qkv, "qkv"):
            weight_gemm(g, "x", name, h_dim, h_dim, prog1)
        prog1 += [Wait(bank=1, count=3 * tiles * h_dim), Halt()]
        # phase 2: attention of the own heads
        score_p = post_words(tokens, *layer.score_post)
        ctx_p = post_words(d, *layer.ctx_post)
        bpr_s, bpr_c = -(-d // macs), -(-tokens // macs)
        sfin, sfout, sosh = layer.softmax
        for i, h in enumerate(heads_of[s]):
            att_w[(s, h, "score")] = w_addr
            att_w[(s, h, "ctx")] = w_addr + tokens * bpr_s
            w_vals.append(np.zeros((tokens * bpr_s + d * bpr_c, macs), np.int8))
            w_idx.append(np.zeros((tokens * bpr_s + d * bpr_c, macs), np.uint8))
            for t in range(tiles):
                sc = addr["s"][1] + (i * tiles + t) * tokens
                prog2 += [
                    Gemm(x_bank=addr["q"][0], x_addr=addr["q"][1] + t * h_dim + h * d,
                         w_addr=w_addr, p_addr=score_p, k=d, o=tokens, d_bank=1, d_addr=sc,
                         mask=1 << s),
                    Wait(bank=1, count=tokens),
                    Act(op=ACT_OPS["softmax"], fin=sfin, fout=sfout, oshift=sosh, s_bank=1,
                        s_addr=sc, d_bank=1, d_addr=sc, count=tokens),
                    Gemm(x_bank=1, x_addr=sc, w_addr=w_addr + tokens * bpr_s, p_addr=ctx_p,
                         k=tokens, o=d, d_bank=addr["c"][0],
                         d_addr=addr["c"][1] + t * h_dim + h * d, mask=all_mask)]
            w_addr += tokens * bpr_s + d * bpr_c
        prog2.append(Wait(bank=addr["c"][0], count=tiles * h_dim))
        n_h = tiles * h_dim

        def add(dst, a, b, rule):
            fin, fout, oshift = rule
            prog2.append(Act(op=ACT_OPS["add"], fin=fin, fout=fout, oshift=oshift,
                             s_bank=addr[a][0], s_addr=addr[a][1], b_bank=addr[b][0],
                             b_addr=addr[b][1], d_bank=addr[dst][0], d_addr=addr[dst][1],
                             count=n_h))

        def layernorm(dst, src, ln):
            nonlocal p_addr
            gamma, beta, fout, oshift = ln
            post_rows.append(((np.asarray(gamma, np.int64) & 0xFFFF)
                              | (np.asarray(beta, np.int64) & 0xFFFF) << 16,
                              np.zeros(h_dim, np.int64), np.zeros(h_dim, np.int64)))
            post_rows[-1] = (post_rows[-1][0] - ((post_rows[-1][0] >> 31 & 1) << 32),
                             *post_rows[-1][1:])
            ln_p = p_addr
            p_addr += h_dim
            for t in range(tiles):
                prog2.append(Act(op=ACT_OPS["layernorm"], fout=fout, oshift=oshift,
                                 s_bank=addr[src][0], s_addr=addr[src][1] + t * h_dim,
                                 d_bank=addr[dst][0], d_addr=addr[dst][1] + t * h_dim,
                                 p_addr=ln_p, count=h_dim))

        weight_gemm(layer.wo, "c", "a", h_dim, h_dim, prog2)
        prog2.append(Wait(bank=addr["a"][0], count=n_h))
        add("r1", "a", "x", layer.add1)
        layernorm("h1", "r1", layer.ln1)
        weight_gemm(layer.w1, "h1", "f", h_dim, f_dim, prog2)
        prog2.append(Wait(bank=addr["f"][0], count=tiles * f_dim))
        gfin, gfout, gosh = layer.gelu
        prog2.append(Act(op=ACT_OPS["gelu"], fin=gfin, fout=gfout, oshift=gosh,
                         s_bank=addr["f"][0], s_addr=addr["f"][1], d_bank=addr["f"][0],
                         d_addr=addr["f"][1], count=tiles * f_dim))
        weight_gemm(layer.w2, "f", "f2", f_dim, h_dim, prog2)
        prog2.append(Wait(bank=addr["f2"][0], count=n_h))
        add("r2", "f2", "h1", layer.add2)
        layernorm("y", "r2", layer.ln2)
        prog2.append(Halt())
        for name, value, depth in (("weight words", w_addr, p["wmem_depth"]),
                                   ("post-op words", p_addr, p["pmem_depth"]),
                                   ("instructions", max(len(prog1), len(prog2)),
                                    p["imem_depth"])):
            if value > depth:
                raise ValueError(f"subsystem {s}: {value} {name} exceed {depth}")
        phase1.append(prog1)
        phase2.append(prog2)
        weights.append((np.concatenate(w_vals), np.concatenate(w_idx)))
        posts.append(tuple(np.concatenate([r[i] for r in post_rows]) for i in range(3)))
    for s in range(used, p["subsystems"]):
        phase1.append([Halt()])
        phase2.append([Halt()])
    return CompiledLayer(params=p, subsystems=used, tiles=tiles, tokens=tokens, phase1=phase1,
                         phase2=phase2, weights=weights, posts=posts, addr=addr, att_w=att_w,
                         heads_of=heads_of)


def run_encoder_layer(layer, x, subsystems=None, params=None, seed=None, max_delay=0):
    """Compile, load, run phase 1, the host step, phase 2 on a fresh ChipModel.

    Returns ``(y (H, T) int8 as read from subsystem 0, model, compiled, cycles)``, ``cycles``
    the two phases' ``total_cycles`` (cycle model; the host step not counted);
    ``compiled.breakdowns`` has subsystem 0's cycles by kind per phase, ``compiled.categories``
    the critical path's :meth:`CompiledLayer.cycle_categories` per phase."""
    compiled = compile_encoder_layer(layer, np.asarray(x).shape[1], subsystems, params)
    model = ChipModel(compiled.params)
    compiled.load(model, 1)
    compiled.load_input(model, np.asarray(x))
    status = model.run(seed, max_delay)
    cycles = [model.stats["total_cycles"]]
    compiled.breakdowns = [compiled.breakdown(model, 0, 1)]
    compiled.categories = [compiled.cycle_categories(model, 1)]
    hazards = model.stats["hazards"]
    if any(st.error for st in status):
        raise RuntimeError(f"phase 1 stopped: {[str(st) for st in status]}")
    compiled.host_step(model)
    compiled.load(model, 2)
    status = model.run(seed, max_delay)
    if any(st.error for st in status):
        raise RuntimeError(f"phase 2 stopped: {[str(st) for st in status]}")
    cycles.append(model.stats["total_cycles"])
    compiled.breakdowns.append(compiled.breakdown(model, 0, 2))
    compiled.categories.append(compiled.cycle_categories(model, 2))
    model.stats["hazards"] += hazards
    return compiled.read_output(model), model, compiled, cycles


# -- an encoder layer streamed by token chunks ---------------------------------------------------
@dataclass
class StreamedLayer(CompiledLayer):
    """An encoder layer too big for the banks when every tensor is resident, compiled as one
    ``kv`` phase (``phase1``: k and v of every token) and one phase per chunk of
    ``chunk_tiles`` token tiles (``chunks``; ``phase2`` is the first). See
    :func:`compile_encoder_layer_streamed`. Phase numbers: 1 is ``kv``, ``2 + c`` chunk ``c``."""
    chunks: list = field(default_factory=list)
    chunk_tiles: int = 0

    def program(self, phase, s):
        return self.phase1[s] if phase == 1 else self.chunks[phase - 2][s]

    def load_chunk(self, model, c):
        for s, program in enumerate(self.chunks[c]):
            model.load_program(s, program)


def compile_encoder_layer_streamed(layer, tokens, chunk_tiles, subsystems=None, params=None):
    """Compile an :class:`EncoderLayer` for ``tokens`` tokens processed in chunks of
    ``chunk_tiles`` tiles of ``lanes`` tokens (same numerics as :func:`compile_encoder_layer`,
    whose mapping it follows: weight GEMMs split by output rows and all-gathered, heads
    round-robin, the activation-engine steps on every subsystem's full copy).

    Phase ``kv``: ``k, v = post(Wk x), post(Wv x)`` for every token (x of all tokens stays in
    bank 0 for the whole layer). The host step (:meth:`CompiledLayer.host_step`) writes
    ``k_h^T`` and ``v_h`` of all tokens into the weight memory. Then per chunk: ``q`` of the
    chunk's tokens, the scores against all ``tokens`` keys, softmax over them, context, output
    projection, residual adds, LayerNorms and the GELU FFN of the chunk's tokens; ``y`` of every
    chunk ends in bank 1 where k and v were (dead after the host step), tile-major as in
    :func:`compile_encoder_layer`. Counted arrivals alternate banks as there (q, scores, a, f2:
    bank 1; c, f: bank 0). The chunk's tensors live at the same rows in every chunk.

    Raises
    ------
    ValueError
        As :func:`compile_encoder_layer`, and ``chunk_tiles`` not dividing the tiles.
    """
    from sparsehw.golden.chip import Act, ACT_OPS
    p = chip_params(params)
    if not p["act_engine"]:
        raise ValueError("compile_encoder_layer_streamed needs a chip with act_engine=True")
    used = p["subsystems"] if subsystems is None else subsystems
    lanes, macs, ar = p["lanes"], p["macs"], p["act_rows"]
    h_dim, f_dim = layer.hidden, layer.w1.o
    d = h_dim // layer.heads
    tiles = -(-tokens // lanes)
    if tiles * lanes != tokens:
        raise ValueError(f"tokens={tokens} must be a multiple of lanes={lanes}")
    if chunk_tiles < 1 or tiles % chunk_tiles:
        raise ValueError(f"chunk_tiles={chunk_tiles} must divide the {tiles} tiles")
    for g, k in ((layer.qkv[0], h_dim), (layer.qkv[1], h_dim), (layer.qkv[2], h_dim),
                 (layer.wo, h_dim), (layer.w1, h_dim), (layer.w2, f_dim)):
        if g.k != k or k > p["max_k"] or k % g.m or k % ar:
            raise ValueError(f"GEMM K={g.k} does not fit (max_k={p['max_k']}, m={g.m})")
    if max(tokens, h_dim) > p["act_max_row"] or tokens % ar or d % ar or tokens > p["max_k"]:
        raise ValueError("tokens and hidden must be <= act_max_row, tokens <= max_k, and "
                         "tokens and the head size multiples of act_rows")
    ct, n_chunks = chunk_tiles, tiles // chunk_tiles
    heads_of = [[h for h in range(layer.heads) if h % used == s] for s in range(used)]
    top = [0, 0]
    addr = {"h": h_dim, "d": d}

    def alloc(name, bank, rows):
        addr[name] = (bank, top[bank])
        top[bank] += rows
    # whole layer: x (bank 0), k, v then y (bank 1: y overlays k and v, dead after the host
    # step); per chunk: the rest
    alloc("x", 0, tiles * h_dim)
    alloc("k", 1, tiles * h_dim)
    alloc("v", 1, tiles * h_dim)
    addr["y"] = (1, 0)
    top[1] = max(top[1], tiles * h_dim)
    for name, bank, rows in (("q", 1, h_dim), ("c", 0, h_dim), ("a", 1, h_dim),
                             ("r1", 0, h_dim), ("h1", 0, h_dim), ("f", 0, f_dim),
                             ("f2", 1, h_dim), ("r2", 1, h_dim)):
        alloc(name, bank, ct * rows)
    addr["s"] = (1, top[1])
    top[1] += max(len(hs) for hs in heads_of) * ct * tokens
    if max(top) > p["bank_rows"]:
        raise ValueError(f"the layer needs {max(top)} bank rows, bank_rows={p['bank_rows']}")
    all_mask = (1 << used) - 1
    kv_progs, chunk_progs = [], [[] for _ in range(n_chunks)]
    weights, posts, att_w = [], [], {}
    for s in range(used):
        w_vals, w_idx, post_rows = [], [], []
        w_addr = p_addr = 0

        def place(g, k, o):
            """The subsystem's slice of ``g`` into the images: its GEMM fields."""
            nonlocal w_addr, p_addr
            start, size = _split(o, used)[s]
            n_log2, m_log2, bpr = _pack_slice(g, start, size, k, macs, w_vals, w_idx, post_rows)
            fields = dict(w_addr=w_addr, p_addr=p_addr, n_log2=n_log2, m_log2=m_log2, k=k,
                          o=size, relu=int(g.relu), mask=all_mask)
            w_addr += size * bpr
            p_addr += size
            return fields, start

        def gemms(placed, src, dst, k, o, tile_list, src_tile0, dst_tile0, prog):
            fields, start = placed
            for t in tile_list:
                prog.append(Gemm(x_bank=addr[src][0], x_addr=addr[src][1] + (t - src_tile0) * k,
                                 d_bank=addr[dst][0],
                                 d_addr=addr[dst][1] + (t - dst_tile0) * o + start, **fields))

        def post_words(rows, mult, shift):
            nonlocal p_addr
            post_rows.append((np.zeros(rows, np.int64), np.full(rows, mult),
                              np.full(rows, shift)))
            p_addr += rows
            return p_addr - rows

        def ln_words(ln):
            nonlocal p_addr
            gamma, beta = ln[0], ln[1]
            packed = ((np.asarray(gamma, np.int64) & 0xFFFF)
                      | (np.asarray(beta, np.int64) & 0xFFFF) << 16)
            packed = packed - ((packed >> 31 & 1) << 32)
            post_rows.append((packed, np.zeros(h_dim, np.int64), np.zeros(h_dim, np.int64)))
            p_addr += h_dim
            return p_addr - h_dim

        wq, wk, wv = (place(g, h_dim, h_dim) for g in layer.qkv)
        wo, w1, w2 = place(layer.wo, h_dim, h_dim), place(layer.w1, h_dim, f_dim), \
            place(layer.w2, f_dim, h_dim)
        score_p = post_words(tokens, *layer.score_post)
        ctx_p = post_words(d, *layer.ctx_post)
        ln1_p, ln2_p = ln_words(layer.ln1), ln_words(layer.ln2)
        bpr_s, bpr_c = -(-d // macs), -(-tokens // macs)
        for h in heads_of[s]:
            att_w[(s, h, "score")] = w_addr
            att_w[(s, h, "ctx")] = w_addr + tokens * bpr_s
            w_vals.append(np.zeros((tokens * bpr_s + d * bpr_c, macs), np.int8))
            w_idx.append(np.zeros((tokens * bpr_s + d * bpr_c, macs), np.uint8))
            w_addr += tokens * bpr_s + d * bpr_c
        # phase kv
        prog = []
        gemms(wk, "x", "k", h_dim, h_dim, range(tiles), 0, 0, prog)
        gemms(wv, "x", "v", h_dim, h_dim, range(tiles), 0, 0, prog)
        prog += [Wait(bank=1, count=2 * tiles * h_dim), Halt()]
        kv_progs.append(prog)
        sfin, sfout, sosh = layer.softmax
        n_h = ct * h_dim
        for c in range(n_chunks):
            t0 = c * ct
            mine = range(t0, t0 + ct)
            prog = []
            gemms(wq, "x", "q", h_dim, h_dim, mine, 0, t0, prog)
            prog.append(Wait(bank=addr["q"][0], count=n_h))
            for i, h in enumerate(heads_of[s]):
                for t in range(ct):
                    sc = addr["s"][1] + (i * ct + t) * tokens
                    prog += [
                        Gemm(x_bank=addr["q"][0], x_addr=addr["q"][1] + t * h_dim + h * d,
                             w_addr=att_w[(s, h, "score")], p_addr=score_p, k=d, o=tokens,
                             d_bank=1, d_addr=sc, mask=1 << s),
                        Wait(bank=1, count=tokens),
                        Act(op=ACT_OPS["softmax"], fin=sfin, fout=sfout, oshift=sosh,
                            s_bank=1, s_addr=sc, d_bank=1, d_addr=sc, count=tokens),
                        Gemm(x_bank=1, x_addr=sc, w_addr=att_w[(s, h, "ctx")], p_addr=ctx_p,
                             k=tokens, o=d, d_bank=addr["c"][0],
                             d_addr=addr["c"][1] + t * h_dim + h * d, mask=all_mask)]
            prog.append(Wait(bank=addr["c"][0], count=n_h))

            def act(op, dst, a_, b=None, rule=(0, 0, 0), p_=0, dst_off=0, a_off=0, b_off=0):
                fin, fout, oshift = rule
                extra = {}
                if b is not None:
                    extra = dict(b_bank=addr[b][0], b_addr=addr[b][1] + b_off)
                prog.append(Act(op=ACT_OPS[op], fin=fin, fout=fout, oshift=oshift,
                                s_bank=addr[a_][0], s_addr=addr[a_][1] + a_off,
                                d_bank=addr[dst][0], d_addr=addr[dst][1] + dst_off,
                                p_addr=p_, count=n_h if op in ("add", "gelu") else h_dim,
                                **extra))
            gemms(wo, "c", "a", h_dim, h_dim, range(ct), 0, 0, prog)
            prog.append(Wait(bank=addr["a"][0], count=n_h))
            act("add", "r1", "a", "x", layer.add1, b_off=t0 * h_dim)
            for t in range(ct):
                act("layernorm", "h1", "r1", rule=(0, layer.ln1[2], layer.ln1[3]), p_=ln1_p,
                    dst_off=t * h_dim, a_off=t * h_dim)
            gemms(w1, "h1", "f", h_dim, f_dim, range(ct), 0, 0, prog)
            prog.append(Wait(bank=addr["f"][0], count=ct * f_dim))
            gfin, gfout, gosh = layer.gelu
            prog.append(Act(op=ACT_OPS["gelu"], fin=gfin, fout=gfout, oshift=gosh,
                            s_bank=addr["f"][0], s_addr=addr["f"][1], d_bank=addr["f"][0],
                            d_addr=addr["f"][1], count=ct * f_dim))
            gemms(w2, "f", "f2", f_dim, h_dim, range(ct), 0, 0, prog)
            prog.append(Wait(bank=addr["f2"][0], count=n_h))
            act("add", "r2", "f2", "h1", layer.add2)
            for t in range(ct):
                act("layernorm", "y", "r2", rule=(0, layer.ln2[2], layer.ln2[3]), p_=ln2_p,
                    dst_off=(t0 + t) * h_dim, a_off=t * h_dim)
            prog.append(Halt())
            chunk_progs[c].append(prog)
        for name, value, depth in (("weight words", w_addr, p["wmem_depth"]),
                                   ("post-op words", p_addr, p["pmem_depth"]),
                                   ("instructions", max(len(kv_progs[-1]),
                                                        *(len(cp[-1]) for cp in chunk_progs)),
                                    p["imem_depth"])):
            if value > depth:
                raise ValueError(f"subsystem {s}: {value} {name} exceed {depth}")
        weights.append((np.concatenate(w_vals), np.concatenate(w_idx)))
        posts.append(tuple(np.concatenate([r[i] for r in post_rows]) for i in range(3)))
    for s in range(used, p["subsystems"]):
        kv_progs.append([Halt()])
        for cp in chunk_progs:
            cp.append([Halt()])
    return StreamedLayer(params=p, subsystems=used, tiles=tiles, tokens=tokens,
                         phase1=kv_progs, phase2=chunk_progs[0], weights=weights, posts=posts,
                         addr=addr, att_w=att_w, heads_of=heads_of, chunks=chunk_progs,
                         chunk_tiles=ct)


def run_encoder_layer_streamed(layer, x, chunk_tiles, subsystems=None, params=None, seed=None,
                               max_delay=0, on_phase=None):
    """:func:`compile_encoder_layer_streamed`, then on a fresh ChipModel: phase kv, the host
    step, every chunk's phase. Returns ``(y (H, T) int8 from subsystem 0, model, compiled,
    cycles)``, ``cycles`` per phase (cycle model; the host step not counted);
    ``compiled.categories`` the critical path's :meth:`CompiledLayer.cycle_categories` per
    phase. ``on_phase(phase, model, compiled)``, if given, is called after every phase (1: kv,
    ``2 + c``: chunk ``c``), e.g. to read tensors that later phases overwrite."""
    x = np.asarray(x)
    compiled = compile_encoder_layer_streamed(layer, x.shape[1], chunk_tiles, subsystems,
                                              params)
    model = ChipModel(compiled.params)
    compiled.load(model, 1)
    compiled.load_input(model, x)
    cycles, hazards = [], 0
    for phase in range(1, 2 + len(compiled.chunks)):
        if phase == 2:
            compiled.host_step(model)
        if phase >= 2:
            compiled.load_chunk(model, phase - 2)
        status = model.run(seed, max_delay)
        if any(st.error for st in status):
            raise RuntimeError(f"phase {phase} stopped: {[str(st) for st in status]}")
        cycles.append(model.stats["total_cycles"])
        compiled.categories.append(compiled.cycle_categories(model, phase))
        hazards += model.stats["hazards"]
        if on_phase is not None:
            on_phase(phase, model, compiled)
    model.stats["hazards"] = hazards
    return compiled.read_output(model), model, compiled, cycles
