"""Tasks: what a run generates and how the pipeline is called. One module per task, one registry.

``model.task`` names one of :data:`TASKS`; ``run.py`` calls it only through the
:class:`~evalrun.tasks.base.Task` protocol. A new task is one module plus a line here (see
README, "Extending evalrun").
"""

from __future__ import annotations

import importlib

from evalrun.errors import ConfigError

TASKS: dict[str, str] = {
    "text2img": "evalrun.tasks.text2img:TextToImage",
    "edit": "evalrun.tasks.edit:Edit",
    "class2img": "evalrun.tasks.class2img:ClassToImage",
    "unconditional": "evalrun.tasks.unconditional:Unconditional",
    "images": "evalrun.tasks.images:ExistingImages",
}


def get_task(name: str):
    """An instance of the task ``name`` (``model.task``)."""
    if name not in TASKS:
        raise ConfigError(f"model.task={name!r} is not valid; use one of {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
