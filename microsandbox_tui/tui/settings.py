"""The dashboard's own files: rebound keys (``keys.toml``), remembered choices
(``settings.toml``) and themes (``themes/*.toml``). No Textual widgets here.

Everything lives in ``$MSB_TUI_CONFIG_DIR`` (default ``~/.config/microsandbox-tui``). A broken
``keys.toml`` stops the dashboard at start-up with a clear message, because a key that silently
does something else is worse than no dashboard; a broken theme or settings file only costs a
notification.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)
from textual.color import Color, ColorParseError
from textual.theme import Theme

from microsandbox_tui.validation import describe_validation_error

CONFIG_DIR_ENV = "MSB_TUI_CONFIG_DIR"
KEYS_FILE = "keys.toml"
SETTINGS_FILE = "settings.toml"
#: The themes shipped with the dashboard: package data in ``themes/`` beside this module
#: (wherever the package is installed, even in a zip).
BUNDLED_THEMES = resources.files("microsandbox_tui.tui") / "themes"

_THEME_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
#: A key as Textual names it ("ctrl+x", "question_mark") or as typed ("?"); no commas.
_KEY_NAME = re.compile(r"^[^\s,]+$")


class ConfigError(Exception):
    """A configuration file the dashboard cannot start with."""


def config_dir() -> Path:
    """``$MSB_TUI_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/microsandbox-tui``, else
    ``~/.config/microsandbox-tui``."""
    if explicit := os.environ.get(CONFIG_DIR_ENV):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "microsandbox-tui"


def _read_toml(path: Traversable) -> dict[str, Any] | None:
    """The file's table, ``None`` if it does not exist; :class:`ConfigError` if unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


# -- keys.toml ------------------------------------------------------------------------------


def _key_list(value: str | list[str]) -> str:
    keys = [value] if isinstance(value, str) else value
    cleaned = [key.strip() for key in keys]
    if not cleaned or any(not key or not _KEY_NAME.match(key) for key in cleaned):
        raise ValueError(f"expected a key name or a list of key names, got {value!r}")
    return ",".join(cleaned)


KeyList = Annotated[str | list[str], AfterValidator(_key_list)]


def load_keymap(path: Path, known_actions: Collection[str]) -> dict[str, str]:
    """``keys.toml`` as a Textual keymap (binding id → comma-separated keys).

    The file maps action names to a key or a list of keys::

        delete = "ctrl+x"
        filter = ["slash", "f"]

    An unknown action or a malformed key raises :class:`ConfigError`.
    """
    table = _read_toml(path)
    if table is None:
        return {}
    unknown = sorted(set(table) - set(known_actions))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        noun = "action" if len(unknown) == 1 else "actions"
        raise ConfigError(
            f"{path}: unknown {noun} {names}; known actions: {', '.join(sorted(known_actions))}"
        )
    fields: dict[str, Any] = {name: (KeyList | None, None) for name in known_actions}
    model = create_model("KeysFile", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        parsed = model.model_validate(table)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_validation_error(error)}") from None
    return {name: keys for name, keys in parsed.model_dump().items() if keys is not None}


# -- settings.toml --------------------------------------------------------------------------


class Settings(BaseModel):
    """What the dashboard remembers between runs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    theme: str | None = None
    #: The program the dashboard's shells run (default: the guest's bash, else ash, else sh).
    shell: str | None = None


def load_settings(path: Path) -> tuple[Settings, str | None]:
    """The settings, and a problem to report if the file could not be used (defaults then)."""
    try:
        table = _read_toml(path)
        return (Settings() if table is None else Settings.model_validate(table)), None
    except ConfigError as error:
        return Settings(), str(error)
    except ValidationError as error:
        return Settings(), f"{path}: {describe_validation_error(error)}"


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def save_settings(path: Path, settings: Settings) -> None:
    """Writes the settings atomically (a crash leaves the old file or the new one)."""
    lines = ["# Written by msb-tui; edit freely while it is not running.\n"]
    for name, value in settings.model_dump().items():
        if value is not None:
            lines.append(f"{name} = {_toml_string(str(value))}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text("".join(lines))
    partial.replace(path)


# -- themes ---------------------------------------------------------------------------------


def _color(value: str) -> str:
    try:
        Color.parse(value)
    except ColorParseError:
        raise ValueError(f"{value!r} is not a colour") from None
    return value


ColorText = Annotated[str, AfterValidator(_color)]


class ThemeFile(BaseModel):
    """A theme as written in ``themes/NAME.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    primary: ColorText
    secondary: ColorText | None = None
    accent: ColorText | None = None
    background: ColorText | None = None
    surface: ColorText | None = None
    panel: ColorText | None = None
    foreground: ColorText | None = None
    success: ColorText | None = None
    warning: ColorText | None = None
    error: ColorText | None = None
    dark: bool = True
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _THEME_NAME.match(value):
            raise ValueError("use lower-case letters, digits, '-' and '_'")
        return value

    def to_theme(self) -> Theme:
        return Theme(**self.model_dump())


@dataclass(frozen=True, slots=True)
class LoadedThemes:
    themes: tuple[Theme, ...]
    #: One line per theme file that could not be used.
    problems: tuple[str, ...]


def _theme_files(directory: Traversable) -> list[Traversable]:
    """The ``*.toml`` files of ``directory`` by name; none if it is not a directory."""
    if not directory.is_dir():
        return []
    files = (entry for entry in directory.iterdir() if entry.name.endswith(".toml"))
    return sorted((entry for entry in files if entry.is_file()), key=lambda entry: entry.name)


def load_themes(directories: Iterable[Traversable]) -> LoadedThemes:
    """Every ``*.toml`` theme in ``directories`` (file system directories, or the package's
    own), in order (a later file with the same name wins); broken files are reported in
    ``problems`` and skipped."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in directories:
        for path in _theme_files(directory):
            try:
                table = _read_toml(path)
                theme = ThemeFile.model_validate(table or {}).to_theme()
            except ConfigError as error:
                problems.append(str(error))
            except ValidationError as error:
                problems.append(f"{path}: {describe_validation_error(error)}")
            else:
                themes[theme.name] = theme
    return LoadedThemes(tuple(themes.values()), tuple(problems))


def theme_directories(directory: Path) -> tuple[Traversable, ...]:
    """Where themes are looked for: the bundled ones, then the user's."""
    return (BUNDLED_THEMES, directory / "themes")
