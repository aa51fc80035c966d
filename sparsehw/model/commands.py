"""What ``sparsehw model inspect`` and ``sparsehw model run`` do (the CLI only parses arguments).

User mistakes (a missing file, a bad N:M, a malformed config, an unsupported ONNX node, an
unknown engine) are raised as :class:`sparsehw.registry.UserError`: one line, exit status 2.
"""

import json
from pathlib import Path

from sparsehw.model import files, run
from sparsehw.model.attrs import ConfigError, load_config, parse_nm
from sparsehw.model.graph import UnsupportedOperator
from sparsehw.model.propagate import initial_attrs, propagate
from sparsehw.model.sentences import EVALUATION
from sparsehw.registry import UserError


__all__ = ["inspect", "run_command", "ENGINES", "summary_text"]

#: Engines ``--engine`` accepts: ``numpy`` (the integer encoder), ``golden`` (the same, plus
#: every weight GEMM compiled and run on the golden chip model, checked bit-exact), ``rtl``
#: (the same as ``golden``, plus encoder layer 0 of the first text on the chip RTL in Verilator:
#: the whole layer once the RTL has the activation engine, else its six weight GEMMs; see
#: :func:`sparsehw.model.run.run_layer_on_rtl`).
ENGINES = ("numpy", "golden", "rtl")


def _user_errors(fn):
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConfigError, files.ModelFileError, UnsupportedOperator) as error:
            raise UserError(str(error)) from None
        except ImportError as error:
            raise UserError(f"the model runner needs the 'model' dependencies ({error.name} is "
                            "missing): run `make venv`") from None
    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


def _settings(nm, config):
    nm = parse_nm(nm) if nm is not None else None
    return run.settings_for(nm, load_config(config) if config else None)


@_user_errors
def inspect(model, nm=None, config=None, changed_only=False):
    """The attribute table of every GEMM weight and activation, before and after propagation."""
    graph = run.load_graph(model)
    settings = _settings(nm, config)
    before = initial_attrs(graph, settings)
    after = propagate(graph, before)
    return run.inspect_text(graph, before, after, changed_only)


def _texts(text, texts_file):
    if text and texts_file:
        raise UserError("give --text or --texts, not both")
    if texts_file:
        try:
            lines = Path(texts_file).read_text().splitlines()
        except OSError as error:
            raise UserError(f"cannot read --texts {texts_file}: {error.strerror}") from None
        texts = [line.strip() for line in lines if line.strip()]
        if not texts:
            raise UserError(f"--texts {texts_file} holds no sentence")
        return texts
    return list(text) if text else list(EVALUATION)


@_user_errors
def run_command(model, *, tokenizer=None, text=None, texts_file=None, nm=None, config=None,
                seq_len=None, subsystems=4, engine="numpy", json_path=None):
    """Run the integer encoder; returns the record (also written to ``json_path``)."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if seq_len is not None and seq_len < 2:
        raise UserError(f"--seq-len must be at least 2, not {seq_len}")
    if not 1 <= subsystems <= 16:
        raise UserError(f"--subsystems must be in 1..16, not {subsystems}")
    texts = _texts(text, texts_file)
    nm_ = parse_nm(nm) if nm is not None else None
    config_ = load_config(config) if config else None
    files.tokenizer_file(model, tokenizer)      # a missing tokenizer fails before the run
    record = run.run_model(model, texts, nm=nm_, config=config_, tokenizer=tokenizer,
                           seq_len=seq_len, subsystems=subsystems, engine=engine)
    if json_path:
        text_out = json.dumps(record, indent=1, sort_keys=True) + "\n"
        if json_path == "-":
            print(text_out, end="")
        else:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(text_out)
    return record


def summary_text(record):
    """A few lines for the terminal."""
    lines = [f"model {record['model']}: {len(record['texts'])} sentence(s), engine "
             f"{record['engine']}, {record['subsystems']} subsystem(s)"]
    if record["embedding_cosine"] is not None:
        lines.append(f"embedding cosine vs onnxruntime float32: mean "
                     f"{record['embedding_cosine']:.4f}, min {min(record['cosines']):.4f}")
    lines.append(f"weight MACs {record['weight_macs']}, nonzero {record['nonzero_weight_macs']}, "
                 f"attention MACs {record['activation_macs']}; MAC speedup "
                 f"{record['mac_speedup']:.3f}")
    lines.append(f"GEMM cycles {record['total_cycles']} (dense {record['dense_cycles']}), "
                 f"speedup {record['speedup']:.3f} [{record['cycles_source']}]")
    if record.get("chip_gemms"):
        chip = record["chip_gemms"]
        lines.append(f"golden chip model: {chip['gemms']} weight GEMMs compiled and run, "
                     f"bit-exact: {'yes' if chip['bit_exact'] else 'NO'}")
    rtl = record.get("rtl_layer")
    if rtl and "weight_gemms" in rtl:
        g = rtl["weight_gemms"]
        lines.append(f"chip RTL ({rtl['sim']}): layer {rtl['layer']}'s {len(g['gemms'])} weight "
                     f"GEMMs bit-exact vs golden chip: "
                     f"{'yes' if g['bit_exact_vs_golden_chip'] else 'NO'}, vs integer engine: "
                     f"{'yes' if g['bit_exact_vs_integer_engine'] else 'NO'}; RTL cycles "
                     f"{sum(v['rtl_cycles'] for v in g['gemms'].values())}, model "
                     f"{sum(v['model_cycles'] for v in g['gemms'].values())}")
        whole = rtl.get("whole_layer", {})
        lines.append("  whole layer: " + (whole["skipped"] if "skipped" in whole else
                     f"bit-exact vs golden chip: "
                     f"{'yes' if whole['bit_exact_vs_golden_chip'] else 'NO'}, RTL cycles "
                     f"{whole['rtl_cycles']}, model {whole['model_cycles']}"))
    return "\n".join(lines)
