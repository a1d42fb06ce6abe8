"""Pick or build the Python environment a model's workers run under.

`resolve_interpreter(model_dir, settings)` applies the --env policy (auto, local, uv, conda, tarball, path).
"""

from __future__ import annotations

from modelport.envs.resolve import Interpreter, resolve_interpreter

__all__ = ["Interpreter", "resolve_interpreter"]
