"""What every wrapper shares: a config mixin for the common fields and ``EquivariantPreTrainedModel``.

Families (``causal_lm/``, ``clip/``, ``multi_input/``) declare only what differs: their base-model Auto class and
the Auto classes they register with, the input the group acts on, whether outputs are equivariant or invariant,
and their model card (template name and values). The base class provides the rest: weight-init hand-off to the
base model, the ``check_equivariance`` protocol, loading (``dtype`` honoured, light checkpoints reloading their
base, clear errors when it cannot be found), saving (remote-code module and ``auto_map``, light saves only while the
base weights are unchanged, never into the base's own folder, a user's README kept), the model card and the push.
"""

from __future__ import annotations

import copy
import functools
import glob
import os
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import transformers
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import logging

from ..aggregation import check_aggregation
from ..hub import EquivariantPushMixin, card_is_ours, merge_trainer_card, push_folder, render_card, base_card_metadata
from ..plans import check_branch_weighting
from . import provenance
from .remote_code import auto_map, write_remote_module

logger = logging.get_logger(__name__)

__all__ = ["EquivariantConfigMixin", "EquivariantPreTrainedModel", "EmbeddingDelegationMixin", "nested_config",
           "check_bool", "check_count", "check_loading_options", "LOADING_OPTIONS", "register_with_auto_classes", "install_trainer_card_hook"]


def nested_config(value: PretrainedConfig | dict[str, Any] | None, field: str) -> PretrainedConfig | None:
    """Rebuild a nested base-model config saved as a dict (it must name its ``model_type``)."""
    if not isinstance(value, dict):
        return value
    data = dict(value)
    model_type = data.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{field} needs a 'model_type' to rebuild the base model's config")
    return AutoConfig.for_model(model_type, **data)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a real boolean; strings such as ``"no"`` are an error, not silently ``True``."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")


def check_count(name: str, value: Any, allow_none: bool = True) -> int | None:
    """A positive integer (or ``None`` when allowed); floats, strings and booleans are errors."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or null' if allow_none else ''}, got {value!r}")
    return int(value)


#: Options ``from_base`` passes to the base model's ``from_pretrained`` (anything else is an error, not ignored).
LOADING_OPTIONS = frozenset({
    "dtype", "torch_dtype", "device_map", "max_memory", "offload_folder", "offload_state_dict", "offload_buffers",
    "low_cpu_mem_usage", "attn_implementation", "quantization_config", "trust_remote_code", "cache_dir", "token",
    "local_files_only", "force_download", "proxies", "subfolder", "variant", "use_safetensors", "key_mapping",
    "tp_plan", "tp_size", "device_mesh", "code_revision", "output_loading_info", "weights_only",
})


def check_loading_options(options: dict[str, Any]) -> None:
    """Refuse unknown ``from_base`` options by name (a misspelt option must not silently do nothing)."""
    unknown = sorted(k for k in options if k not in LOADING_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}: not a wrapper setting and not a loading option of the base "
                        f"model's from_pretrained (known loading options: {sorted(LOADING_OPTIONS)})")


def register_with_auto_classes(config_class: type, model_class: type) -> None:
    """Register a family's config with ``AutoConfig`` and its model with every Auto class in ``auto_classes``
    (the same list the saved ``auto_map`` names)."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for name in model_class.auto_classes:
        getattr(transformers, name).register(config_class, model_class, exist_ok=True)


class EquivariantConfigMixin:
    """The fields and checks shared by every wrapper config (mix into a ``PretrainedConfig`` subclass)."""

    #: Strategies the family accepts.
    allowed_strategies: ClassVar[tuple[str, ...]] = ("full", "multi", "canonical")
    #: The attribute holding the base model's nested config (saved as a dict; its ``dtype`` follows a requested
    #: loading dtype), if the family has one.
    nested_config_field: ClassVar[str | None] = None

    def set_nested_config(self, value: PretrainedConfig | dict[str, Any] | None) -> PretrainedConfig | None:
        """Store the base model's config under ``nested_config_field`` (rebuilt from a dict when loading)."""
        config = nested_config(value, self.nested_config_field)
        setattr(self, self.nested_config_field, config)
        return config

    @staticmethod
    def mirror_base_fields(kwargs: dict[str, Any], base_config: PretrainedConfig | None, keys: Sequence[str],
                           tie_word_embeddings: bool = False) -> None:
        """Copy ``keys`` (special token ids, labels) from the base config into ``kwargs`` unless given, so
        ``generate`` and pipelines read them from the wrapper's config; optionally its ``tie_word_embeddings``."""
        if base_config is None:
            return
        if tie_word_embeddings:
            kwargs.setdefault("tie_word_embeddings", getattr(base_config, "tie_word_embeddings", False))
        for key in keys:
            if kwargs.get(key) is None and getattr(base_config, key, None) is not None:
                kwargs[key] = getattr(base_config, key)

    def to_dict(self) -> dict[str, Any]:
        """The config as a dict, with the nested base config serialised as a dict too."""
        output = super().to_dict()  # type: ignore[misc]  # PretrainedConfig.to_dict, next in the MRO
        nested = getattr(self, self.nested_config_field, None) if self.nested_config_field else None
        if isinstance(nested, PretrainedConfig):
            output[self.nested_config_field] = nested.to_dict()
        return output

    def set_equivariant_fields(self, *, strategy: str, aggregation: str, branch_weighting: str,
                               base_model_name_or_path: str | None, base_model_revision: str | None = None,
                               save_base_weights: bool = True) -> None:
        if not isinstance(strategy, str) or strategy not in self.allowed_strategies:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {self.allowed_strategies}")
        self.strategy = strategy
        self.aggregation = check_aggregation(aggregation)
        self.branch_weighting = check_branch_weighting(branch_weighting)
        if base_model_name_or_path is not None and not isinstance(base_model_name_or_path, str):
            raise ValueError(f"base_model_name_or_path must be a string, got {base_model_name_or_path!r}")
        self.base_model_name_or_path = base_model_name_or_path
        self.base_model_revision = base_model_revision
        self.save_base_weights = check_bool("save_base_weights", save_base_weights)

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoConfig") -> None:
        """Does nothing: saves write their own ``auto_map`` and remote-code module (see ``save_pretrained``), so
        transformers must not copy this package's source files into a saved folder."""


_HUB_KEYS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download", "proxies")
_PUSH_KEYS = ("repo_id", "commit_message", "commit_description", "private", "token", "revision", "create_pr")
_CARD_KEYS = ("tags", "license", "language")


class EquivariantPreTrainedModel(EquivariantPushMixin, PreTrainedModel):
    """Shared base of the wrappers around a Hugging Face base model (held as ``self.base``)."""

    base_model_prefix = "base"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    #: Auto class that loads the base model by name (light saves, ``from_base`` with a name); ``None``: no base.
    base_auto_class: ClassVar[Any] = None
    #: transformers Auto classes that load this wrapper (registration and the saved ``auto_map``).
    auto_classes: ClassVar[tuple[str, ...]] = ("AutoModel",)
    #: The input key the group acts on (``"input_ids"``, ``"pixel_values"``).
    group_input: ClassVar[str] = "input_ids"
    #: ``"equivariant"`` (outputs move with the input) or ``"invariant"``.
    output_kind: ClassVar[str] = "equivariant"
    #: Model card: template name in ``model_cards/``, pipeline tag and tags.
    card_template: ClassVar[str] = ""
    card_pipeline_tag: ClassVar[str | None] = None
    card_tags: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ construction helpers
    def attach_base(self, base_model: Any, tokenizer: Any = None) -> None:
        """Hold ``base_model`` (built from the saved nested config when ``None``: ``from_pretrained`` then loads
        the weights into it), the tokenizer, a copy of the base's generation config and per-thread diagnostics."""
        if base_model is None:
            field = self.config.nested_config_field
            nested = getattr(self.config, field, None) if field else None
            if nested is None:
                raise ValueError(f"the config has no {field}: build the wrapper with from_base(...)")
            base_model = self.base_auto_class.from_config(nested)
        self.base = base_model
        self.tokenizer = tokenizer
        if getattr(base_model, "generation_config", None) is not None and self.can_generate():
            self.generation_config = copy.deepcopy(base_model.generation_config)
        self._diagnostics = threading.local()

    @classmethod
    def load_base(cls, model_or_name: Any, revision: str | None = None, **loading_kwargs: Any) -> tuple[Any, str | None]:
        """``(base model, its name or path)`` from an instance, a Hub id or a local folder (made absolute)."""
        check_loading_options(loading_kwargs)
        if isinstance(model_or_name, (str, os.PathLike)):
            name = os.fspath(model_or_name)
            return (cls.base_auto_class.from_pretrained(name, revision=revision, **loading_kwargs),
                    provenance.resolve_local(name))
        if loading_kwargs:
            raise TypeError(f"loading option(s) {sorted(loading_kwargs)} only apply when the base model is given by "
                            "name; load the model with them first, then wrap the instance")
        return model_or_name, provenance.resolve_local(getattr(model_or_name.config, "_name_or_path", None) or None)

    def track_base(self, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> None:
        """Record where the base came from (called by ``from_base`` and light loads).

        Sets ``name_or_path`` to the base's name (so ``Trainer`` cards and PEFT adapters name it), makes a local
        base absolute, pins a Hub base to the commit of its cached files, and fingerprints the base weights: a light
        save later references the base only while these weights are unchanged.
        """
        name = provenance.resolve_local(getattr(self.config, "base_model_name_or_path", None))
        self.config.base_model_name_or_path = name
        self.config.base_model_revision = provenance.pinned_revision(
            name, getattr(self.config, "base_model_revision", None) or revision, cache_dir)
        if name and not getattr(self.config, "_name_or_path", None):
            self.config._name_or_path = name
            self.name_or_path = name
        self._base_fingerprint = provenance.weights_fingerprint(self.base)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """The wrapper's modules are the base model's: use the base's scheme (it also rebuilds derived buffers, such
        as rotary tables, after a meta-device load). Families with modules of their own extend this."""
        base = getattr(self, "base", None)
        if module is not self and base is not None and hasattr(base, "_init_weights"):
            base._init_weights(module)

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoModel") -> None:
        """Does nothing: saves write their own ``auto_map`` and remote-code module, so transformers must not copy
        this package's source files into a saved folder (it calls this after a ``trust_remote_code`` load)."""

    # ------------------------------------------------------------------ check_equivariance protocol
    @property
    def action(self) -> Any:  # pragma: no cover - every family defines it
        raise NotImplementedError

    def equivariance_group_order(self) -> int:
        return self.action.order

    def equivariance_element_label(self, element: int) -> str:
        return self.action.element_label(int(element))

    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        moved = dict(inputs)
        moved[self.group_input] = self.action.transform_inputs(inputs[self.group_input], int(element))
        return moved

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:  # pragma: no cover - per family
        raise NotImplementedError

    def equivariance_transform_outputs(self, output: torch.Tensor, element: int) -> torch.Tensor:
        if self.output_kind == "invariant":
            return output
        return self.action.transform_outputs(output, int(element))

    # ------------------------------------------------------------------ loading
    @classmethod
    def _class_for_config(cls, config: PretrainedConfig) -> type[EquivariantPreTrainedModel]:
        """The class to instantiate for a loaded config (CLIP picks its SigLIP variant)."""
        return cls

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """Families attach what lives beside the weights (the causal LM's tokenizer); nothing by default."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any):
        """Reload a saved wrapper: full saves load their weights, light saves reload the base by reference.

        ``dtype`` (or ``torch_dtype``) applies to the base model in both cases. ``base_model_name_or_path=...``
        points a light checkpoint at another copy of its base (a moved folder, a local mirror of a Hub model).
        """
        if cls.base_auto_class is None:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        path = os.fspath(pretrained_model_name_or_path)
        config = kwargs.pop("config", None)
        new_base = kwargs.pop("base_model_name_or_path", None)
        hub_kwargs = {k: kwargs[k] for k in _HUB_KEYS if k in kwargs}
        if not isinstance(config, PretrainedConfig):
            config = AutoConfig.from_pretrained(path, **hub_kwargs,
                                                **({"trust_remote_code": True} if kwargs.get("trust_remote_code")
                                                   else {}))
        if not isinstance(config, cls.config_class):
            raise ValueError(f"{path} holds a {getattr(config, 'model_type', type(config).__name__)!r} model, not a "
                             f"{cls.__name__} checkpoint ({cls.config_class.model_type!r}); load it with its own class "
                             "or wrap it with from_base(...)")
        target = cls._class_for_config(config)
        if new_base is not None:
            config.base_model_name_or_path = provenance.resolve_local(new_base)
            config.base_model_revision = None
        dtype = _requested_dtype(kwargs)
        if config.save_base_weights:
            field = getattr(config, "nested_config_field", None)
            nested = getattr(config, field, None) if field else None
            if dtype is not None and nested is not None:
                nested.dtype = dtype  # the base is built from its own config, whose saved dtype would win
            model = super(EquivariantPreTrainedModel, target).from_pretrained(path, *model_args, config=config,
                                                                              **kwargs)
        else:
            model = target._load_light(path, config, kwargs)
        model.attach_loaded_components(path, hub_kwargs)
        return model

    @classmethod
    def _load_light(cls, path: str, config: Any, kwargs: dict[str, Any]) -> Any:
        """A light checkpoint: the base reloaded by reference, the wrapper rebuilt around it, its generation config
        restored."""
        reference = config.base_model_name_or_path
        if not reference:
            raise ValueError(f"the light checkpoint {path} does not name its base model (base_model_name_or_path); "
                             "pass from_pretrained(..., base_model_name_or_path=BASE)")
        if provenance.is_local_reference(reference):
            if not os.path.isabs(reference):
                logger.warning("the light checkpoint %s stores the relative base path %r (written by hf_equivariant "
                               "< 0.2); it is resolved against the working directory %s. Save it again to store an "
                               "absolute path.", path, reference, os.getcwd())
            if not os.path.isdir(reference):
                raise FileNotFoundError(provenance.load_error_hint(reference, None, path))
            if os.path.isdir(path) and os.path.samefile(reference, path):
                raise ValueError(f"the light checkpoint {path} names its own folder as its base model, so it can "
                                 "never be loaded (it was saved into its base's folder, overwriting the base's "
                                 "config). Restore the base model files and save the wrapper elsewhere.")
        loading = {k: v for k, v in kwargs.items() if k not in ("revision", "subfolder")}
        try:
            base = cls.base_auto_class.from_pretrained(reference, revision=config.base_model_revision, **loading)
        except OSError as err:
            if provenance.is_local_reference(reference):
                raise
            raise OSError(f"{provenance.load_error_hint(reference, config.base_model_revision, path)} "
                          f"(transformers: {err})") from err
        model = cls(config, base_model=base)
        model._base_fingerprint = provenance.weights_fingerprint(model.base)
        _restore_generation_config(model, path, {k: kwargs[k] for k in _HUB_KEYS if k in kwargs})
        model.eval()
        return model

    # ------------------------------------------------------------------ saving
    def light_save_problem(self) -> str | None:
        """Why a light save would not reproduce this model (``None`` when it would)."""
        fingerprint = getattr(self, "_base_fingerprint", None)
        base = self.config.base_model_name_or_path
        if fingerprint is None:
            return (f"its base weights cannot be checked against {base} (the wrapper was not built by from_base or "
                    "loaded from a light checkpoint)")
        changed = provenance.changed_weights(fingerprint, self.base)
        if changed:
            return (f"{len(changed)} base tensor(s) changed since the base was loaded from {base} "
                    f"({provenance.describe(changed)}); a light checkpoint would reload the original weights")
        return None

    def _refuse_base_folder(self, save_directory: str | os.PathLike) -> None:
        folder = os.fspath(save_directory)
        if not os.path.isdir(folder):
            return
        base_config = getattr(getattr(self, "base", None), "config", None)
        for candidate in (getattr(self.config, "base_model_name_or_path", None),
                          getattr(base_config, "_name_or_path", None)):
            if candidate and os.path.isdir(candidate) and os.path.samefile(candidate, folder):
                raise ValueError(f"refusing to save into {folder}: it is the folder of the base model. Saving there "
                                 "would overwrite the base's config.json and README.md (and a light checkpoint would "
                                 "then name itself as its base). Choose another folder.")

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, push_to_hub: bool = False,
                        **kwargs: Any) -> Any:
        """Save the wrapper: full weights (default) or a light config that references the base model.

        Beside the weights: ``modeling_hf_equivariant.py`` and ``auto_map`` (``trust_remote_code=True`` loads the
        folder without importing hf_equivariant), the tokenizer / image processor / processor given here or held by
        the wrapper, and the model card (a README.md written by someone else is kept). A light save falls back to a
        full one, with a warning, when the base weights changed since they were loaded (fine-tuning). Options:
        ``save_base_weights``, ``tokenizer``, ``image_processor``, ``processor``; card ``tags``, ``license``,
        ``language``; ``push_to_hub=True`` with ``repo_id`` (default: the folder name), ``commit_message``,
        ``commit_description``, ``private``, ``token``, ``revision``, ``create_pr``: the folder is saved first, then
        uploaded by the same code as :meth:`push_to_hub`.
        """
        push = {k: kwargs.pop(k) for k in _PUSH_KEYS if k in kwargs}
        repo_id = kwargs.pop("hub_repo_id", None)
        if push_to_hub:
            repo_id = push.pop("repo_id", None) or os.path.basename(os.path.normpath(os.fspath(save_directory)))
        self._save_local(save_directory, *args, hub_repo_id=repo_id, **kwargs)
        if push_to_hub and kwargs.get("is_main_process", True):
            card_kwargs = {k: kwargs[k] for k in _CARD_KEYS if k in kwargs}
            return push_folder(save_directory, repo_id, **push, on_repo_id=lambda full_id: self.write_model_card(
                save_directory, repo_id=full_id, **card_kwargs))
        return None

    def _save_local(self, save_directory: str | os.PathLike, *args: Any, save_base_weights: bool | None = None,
                    tokenizer: Any = None, image_processor: Any = None, processor: Any = None,
                    hub_repo_id: str | None = None, tags: Sequence[str] | None = None, license: str | None = None,
                    language: str | Sequence[str] | None = None, **kwargs: Any) -> None:
        self._refuse_base_folder(save_directory)
        full = getattr(self.config, "save_base_weights", True) if save_base_weights is None else bool(
            save_base_weights)
        base = getattr(self.config, "base_model_name_or_path", None)
        if not full:
            if not base:
                raise ValueError("a light save needs base_model_name_or_path (the Hub id or folder of the base "
                                 "model); wrap a model loaded by name, or save with save_base_weights=True")
            if hub_repo_id and provenance.is_local_reference(base):
                raise ValueError(f"refusing a light push to {hub_repo_id}: its base model is the local folder {base}, "
                                 "which nobody else can load. Push a full save (save_base_weights=True) or wrap the "
                                 "base by its Hub id.")
            problem = self.light_save_problem()
            if problem:
                logger.warning("saving %s with the full weights instead of a light reference: %s.",
                               os.fspath(save_directory), problem)
                full = True
        is_main = kwargs.get("is_main_process", True)
        os.makedirs(save_directory, exist_ok=True)
        original = getattr(self.config, "save_base_weights", True)
        self.config.save_base_weights = full
        self.config.auto_map = auto_map(type(self.config), type(self), self.auto_classes)
        try:
            if full:
                super().save_pretrained(save_directory, *args, **kwargs)
            elif is_main:
                _remove_weight_files(save_directory)
                self.config.save_pretrained(save_directory)
                generation_config = getattr(self, "generation_config", None)
                if generation_config is not None and self.can_generate():
                    generation_config.save_pretrained(save_directory)
            if is_main:
                write_remote_module(save_directory, [type(self.config), type(self)])
                for component in (tokenizer if tokenizer is not None else getattr(self, "tokenizer", None),
                                  image_processor,
                                  processor if processor is not None else getattr(self, "processor", None)):
                    if component is not None:
                        component.save_pretrained(save_directory)
                self.write_model_card(save_directory, repo_id=hub_repo_id, tags=tags, license=license,
                                      language=language)
        finally:
            self.config.save_base_weights = original

    # ------------------------------------------------------------------ model card
    def card_context(self, repo: str) -> dict[str, Any]:  # pragma: no cover - every family defines it
        """Values for the family's card template; ``repo`` is the id or folder shown in the usage snippet."""
        raise NotImplementedError

    def card_group_tags(self) -> list[str]:
        """Tags naming the groups (``gender``, ``rot90``, ...)."""
        return []

    def base_display_name(self, default: str) -> str:
        """The base model's Hub id, or the name of its local folder."""
        base = getattr(self.config, "base_model_name_or_path", None)
        if not base:
            return default
        return os.path.basename(os.path.normpath(base)) if provenance.is_local_reference(base) else base

    def card_metadata(self, *, for_hub: bool = False, tags: Sequence[str] | None = None, license: str | None = None,
                      language: str | Sequence[str] | None = None) -> dict[str, Any]:
        """YAML front matter: ``library_name: transformers``, tags, ``base_model`` (a Hub id; a local folder is
        omitted), ``pipeline_tag``, and license / language as given or inherited from the base model's card."""
        base = getattr(self.config, "base_model_name_or_path", None)
        hub_base = base if base and not provenance.is_local_reference(base) else None
        if base and hub_base is None:
            (logger.warning if for_hub else logger.info)(
                "the model card omits base_model: the base model %s is a local folder, not a Hub id", base)
        inherited = base_card_metadata(base, allow_network=for_hub)
        kind = "invariance" if self.output_kind == "invariant" else "equivariance"
        all_tags = ["hf_equivariant", kind, *self.card_tags, *self.card_group_tags(), *(tags or [])]
        return {"library_name": "transformers", "pipeline_tag": self.card_pipeline_tag, "base_model": hub_base,
                "license": license or inherited.get("license"),
                "license_name": None if license else inherited.get("license_name"),
                "license_link": None if license else inherited.get("license_link"),
                "language": language or inherited.get("language"), "tags": list(dict.fromkeys(all_tags))}

    def model_card(self, repo_id: str | None = None, *, folder: str | os.PathLike | None = None,
                   tags: Sequence[str] | None = None, license: str | None = None,
                   language: str | Sequence[str] | None = None) -> str:
        """The README.md written beside a save: the family template from ``model_cards/`` with this model's values.

        ``repo_id`` (when pushing) or the folder name appears in the usage snippet.
        """
        repo = repo_id or (os.path.basename(os.path.normpath(os.fspath(folder))) if folder else "path/to/model")
        metadata = self.card_metadata(for_hub=repo_id is not None, tags=tags, license=license, language=language)
        return render_card(self.card_template, metadata, self.card_context(repo))

    def write_model_card(self, save_directory: str | os.PathLike, repo_id: str | None = None,
                         **card_kwargs: Any) -> str | None:
        """Write README.md unless the folder holds a card someone else wrote (kept; returns ``None`` then)."""
        path = os.path.join(os.fspath(save_directory), "README.md")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                existing = f.read()
            if not card_is_ours(existing):
                logger.info("kept the existing README.md in %s (not written by hf_equivariant); delete it to get "
                            "the generated card", os.fspath(save_directory))
                return None
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.model_card(repo_id, folder=save_directory, **card_kwargs))
        return path


class EmbeddingDelegationMixin:
    """Embedding accessors of a text wrapper, delegated to ``self.base`` (what ``resize_token_embeddings``,
    PEFT and generation utilities call); a resize updates the nested base config the wrapper saves."""

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.base.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.base.set_input_embeddings(value)

    def get_output_embeddings(self) -> torch.nn.Module | None:
        return self.base.get_output_embeddings()

    def set_output_embeddings(self, value: torch.nn.Module) -> None:
        self.base.set_output_embeddings(value)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> torch.nn.Embedding:
        """Resize the base model's embeddings; new ids are fixed by every group element unless a factor's words
        use them."""
        out = self.base.resize_token_embeddings(*args, **kwargs)
        setattr(self.config, self.config.nested_config_field, self.base.config)
        return out


def _requested_dtype(kwargs: dict[str, Any]) -> torch.dtype | None:
    """A concrete ``dtype`` / ``torch_dtype`` loading option (``"auto"`` and ``None``: none)."""
    value = kwargs.get("dtype", kwargs.get("torch_dtype"))
    if isinstance(value, str) and value != "auto":
        value = getattr(torch, value, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {kwargs.get('dtype', kwargs.get('torch_dtype'))!r}; use e.g. "
                             "torch.float16, 'bfloat16' or 'auto'")
    return value if isinstance(value, torch.dtype) else None


def _restore_generation_config(model: Any, path: str, hub_kwargs: dict[str, Any]) -> None:
    """A light save's own ``generation_config.json`` wins over the base model's."""
    if not model.can_generate():
        return
    from transformers import GenerationConfig

    try:
        model.generation_config = GenerationConfig.from_pretrained(path, **hub_kwargs)
    except (OSError, ValueError):  # none saved: keep the base's
        pass


def _remove_weight_files(folder: str | os.PathLike) -> None:
    """Weights of an earlier full save in the same folder would contradict a light config: remove them."""
    for name in ("model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors",
                 "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"):
        for path in glob.glob(os.path.join(os.fspath(folder), name)):
            logger.info("removing %s (weights of an earlier full save; this save is light)", path)
            os.remove(path)


def install_trainer_card_hook() -> None:
    """Make ``Trainer.create_model_card`` (and so ``Trainer.push_to_hub``) write the wrapper's own card.

    The Trainer writes a generic card after saving; for hf_equivariant wrappers this hook replaces it with the
    wrapper's card plus the Trainer's tags, datasets and training section. Other models are untouched. Installed
    once, when ``transformers.trainer`` is imported in a process that imported hf_equivariant.
    """
    from transformers import Trainer

    original = Trainer.create_model_card
    if getattr(original, "_hf_equivariant_hook", False):
        return

    @functools.wraps(original)
    def create_model_card(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        model = self.accelerator.unwrap_model(self.model) if hasattr(self, "accelerator") else self.model
        if not isinstance(model, EquivariantPreTrainedModel) or not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        generic = ""
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                generic = f.read()
        repo_id = getattr(self, "hub_model_id", None) or getattr(self.args, "hub_model_id", None)
        card_kwargs = {k: kwargs[k] for k in ("license", "language") if kwargs.get(k)}
        ours = model.model_card(repo_id, folder=self.args.output_dir, **card_kwargs)
        with open(path, "w", encoding="utf-8") as f:
            f.write(merge_trainer_card(ours, generic) if generic else ours)

    create_model_card._hf_equivariant_hook = True  # type: ignore[attr-defined]
    Trainer.create_model_card = create_model_card
