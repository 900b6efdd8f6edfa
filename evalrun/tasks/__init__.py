"""Tasks: what a run generates and how the pipeline is called. One module per task, one registry.

``model.task`` names one of :data:`TASKS`; ``run.py`` calls it only through the
:class:`~evalrun.tasks.base.Task` protocol. A task of your own is one module plus its model
yaml, which names the class by import path (``task: my_tasks.inpaint:Inpaint``; README,
"Extending evalrun"); a line here makes it a built-in.
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
    """An instance of the task ``name`` (``model.task``): a registered name or ``package.module:Class``."""
    from evalrun.plugins import build, is_import_path, load_class

    if is_import_path(name):
        from evalrun.tasks.base import Task

        return build(load_class(name, "model.task", Task), name, "model.task")
    if name not in TASKS:
        raise ConfigError(f"model.task={name!r} is not valid; use one of {', '.join(TASKS)}, or "
                          f"package.module:Class for a task of your own")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
