"""Whether a checkpoint folder fits what a run asks of it, read from its model_index.json before any
weights load: the components the pipeline class needs, networks of the kinds it expects, and a VAE
for VAE tiling or slicing. diffusers loads a missing component as None and a network of another kind
as it is, and the run then failed at its first prompt with a traceback.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError
from evalrun.pipelines import model_index


def checked_components(cfg: Any, pipeline_cls: type) -> None:
    """From the checkpoint's model_index.json, before the weights load: the components ``pipeline_cls``
    needs (an SDXL pipeline on an SD 1.5 folder loaded with no second text encoder and failed mid-run with
    a traceback), and a VAE for VAE tiling or slicing (DDPM has none)."""
    import diffusers

    import evalrun.tiny as tiny

    index, params = model_index(cfg.model), inspect.signature(pipeline_cls.__init__).parameters
    folder = Path(tiny.resolve(cfg.model.path))
    if folder.is_dir():  # a local folder: each component model_index.json lists has its own subfolder
        absent = [name for name, entry in index.items() if not name.startswith("_") and isinstance(entry, (list, tuple))
                  and len(entry) == 2 and entry[0] and not (folder / name).is_dir()]
        if absent:
            raise ConfigError(f"model.path={cfg.model.path}: model_index.json lists {', '.join(absent)}, but the folder "
                              f"has no {', '.join(f'{a}/' for a in absent)}; copy the missing folder(s) from the "
                              f"checkpoint (or save_pretrained it again)")
    # Optional components (diffusers loads them as None), and what evalrun passes itself (load_pipeline).
    optional = getattr(pipeline_cls, "_optional_components", [])
    passed = {"safety_checker", "requires_safety_checker", *optional}
    needed = [name for name, p in params.items()
              if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD and name != "self"
              and name not in passed]
    missing = [name for name in needed if not (isinstance(index.get(name), (list, tuple)) and index[name][0])]
    # An optional component the checkpoint's own pipeline never takes (SDXL's second text encoder, for an SD 1.5
    # folder): diffusers loads None and the call fails mid-run.
    own = getattr(diffusers, str(index.get("_class_name")), None)
    if isinstance(own, type) and own is not pipeline_cls:
        takes = set(inspect.signature(own.__init__).parameters)
        missing += [name for name in optional
                    if name in params and name not in index and name not in takes]
    wrong = [f"{name} {index[name][1]} (not {params[name].annotation.__name__})" for name in needed
             if name not in missing and _other_model(params[name].annotation, index[name])]
    if missing or wrong:
        found = (f"needs {', '.join(missing)}, which model.path={cfg.model.path} does not have" if missing else
                 f"takes other networks than model.path={cfg.model.path} holds: {', '.join(wrong)}")
        raise ConfigError(f"model.pipeline={pipeline_cls.__name__} {found} (its model_index.json names "
                          f"{index.get('_class_name')}); set model.pipeline to a pipeline for this checkpoint")
    for key in ("vae_tiling", "vae_slicing"):
        if cfg.get(key) and "vae" not in index:
            raise ConfigError(f"{key}=true has no effect on {cfg.model.pipeline} (model.path={cfg.model.path} has no "
                              f"vae component); remove {key}")


def _other_model(wanted: Any, entry: Any) -> bool:
    """Whether model_index.json's ``[library, class]`` for a component is a network of another kind than the
    pipeline's ``__init__`` annotates (SD3's transformer for FLUX's): it would load, then fail mid-run.
    Only networks are compared (tokenizers and schedulers have interchangeable classes)."""
    import diffusers
    import torch
    import transformers

    library = {"diffusers": diffusers, "transformers": transformers}.get(str(entry[0]))
    found = getattr(library, str(entry[1]), None) if library is not None else None
    if not (isinstance(wanted, type) and isinstance(found, type) and issubclass(wanted, torch.nn.Module)):
        return False
    return not issubclass(found, wanted)
