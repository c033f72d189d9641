"""Load a role's class from its `<role>/main.py` without running the script's `__main__` block."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from flame_sdk.roles.base import Role
from schemas.errors import Invalid


def load_role_class(main_py: Path) -> type[Role]:
    """The one Role subclass defined in `main_py` (the module is imported once per path)."""
    path = main_py.resolve()
    name = "flame_sim_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise Invalid(f"cannot load role code {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Role) and obj.__module__ == name
    ]
    if len(found) != 1:
        names = [c.__name__ for c in found]
        raise Invalid(f"{path} must define exactly one Role subclass, found {names or 'none'}")
    return found[0]
