"""Building the job's objects from config nodes, turning constructor errors into one clear line."""

from __future__ import annotations

import re
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from lightning_prunelimit.app.config.validation import ConfigError

__all__ = ["instantiate_group", "instantiate_node"]


def instantiate_node(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; a constructor's error becomes a ConfigError.

    The message names the config key of the failing node (``model.net`` for a nested network)
    and carries the constructor's own message, which says what to change.

    Args:
        node: a config node with a ``_target_``.
        key: its dotted key in the job's config (for messages).
        **kwargs: arguments that override or complete the node.

    Example:
        >>> from omegaconf import OmegaConf
        >>> node = OmegaConf.create({"_target_": "datetime.timedelta", "days": 1})
        >>> instantiate_node(node, "delay").days
        1
        >>> try:
        ...     instantiate_node(OmegaConf.create({"_target_": "fractions.Fraction",
        ...                                        "numerator": "one"}), "ratio")
        ... except ConfigError as error:
        ...     print(error)
        ratio (fractions.Fraction): ValueError: Invalid literal for Fraction: 'one'
    """
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as error:
        text = str(error)
        full_key = re.search(r"full_key: (\S+)", text)
        target = re.search(r"target '([^']+)'", text)
        where = full_key.group(1) if full_key else key
        if target:
            where += f" ({target.group(1)})"
        cause = error.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else text.strip()
        raise ConfigError(f"{where}: {reason}") from error


def instantiate_group(group: DictConfig | None, key: str) -> dict[str, Any]:
    """Instantiate every node of a group such as ``callbacks`` or ``logger``, by node name.

    Args:
        group: the group's config (``None`` or empty for none).
        key: the group's key, for messages.

    Example:
        >>> from omegaconf import OmegaConf
        >>> group = OmegaConf.create({"a": {"_target_": "fractions.Fraction", "numerator": 3}})
        >>> instantiate_group(group, "things")
        {'a': Fraction(3, 1)}
    """
    if not group:
        return {}
    return {str(name): instantiate_node(group[name], f"{key}.{name}") for name in group}
